package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/dataplane/store"
)

// /healthz is 503 until the first full sync, 200 after, 503 again while
// the backend fails changes or resyncs, until one goes through, and not
// for bad input.
func TestHealthz(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	be := &dptest.Recorder{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec, err := dataplane.NewReconciler(be, dptest.NoDevices{}, st, log)
	if err != nil {
		t.Fatal(err)
	}
	h := &health{}
	addObserver(rec, h.observe)
	srv := api.NewServer(rec, nil, log)
	srv.Health = h
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	check := func(when string, wantCode int, wantBody string) {
		t.Helper()
		resp, err := http.Get(ts.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantCode || !strings.Contains(string(b), wantBody) {
			t.Errorf("%s: /healthz %d %q, want %d %q", when, resp.StatusCode, b, wantCode, wantBody)
		}
	}
	check("before the first sync", http.StatusServiceUnavailable, "starting")
	ctx := context.Background()
	if err := rec.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h.setReady()
	check("after the first sync", http.StatusOK, "ok")
	put := func(name, subnet string) error {
		_, err := rec.Do(ctx, model.Op{Kind: "network", Network: &model.Network{Name: name, Bridge: name, Subnet: subnet}})
		return err
	}
	if err := put("pcbad", "not-a-subnet"); err == nil {
		t.Fatal("a bad subnet was taken")
	}
	check("after bad input", http.StatusOK, "ok")
	be.Fail = errors.New("map pc_networks is full")
	if err := put("pc1", "10.1.0.0/16"); err == nil {
		t.Fatal("the failing backend took a change")
	}
	check("while the backend fails", http.StatusServiceUnavailable, "map pc_networks is full")
	// The sync runner's resync, failing and then repairing.
	if err := rec.Resync(ctx); err == nil {
		t.Fatal("the failing backend took a resync")
	}
	check("while resyncs fail", http.StatusServiceUnavailable, "map pc_networks is full")
	be.Fail = nil
	if err := rec.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	check("once a resync went through", http.StatusOK, "ok")
	be.Fail = errors.New("map pc_networks is full")
	if err := put("pc1", "10.1.0.0/16"); err == nil {
		t.Fatal("the failing backend took a change")
	}
	check("while the backend fails again", http.StatusServiceUnavailable, "map pc_networks is full")
	be.Fail = nil
	if err := put("pc1", "10.1.0.0/16"); err != nil {
		t.Fatal(err)
	}
	check("once a change went through again", http.StatusOK, "ok")
}
