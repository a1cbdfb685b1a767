// Package dptest has test doubles for the control plane's tests: a backend
// that records what it was told to apply, devices that touch nothing, and
// an in-process agent serving the real API on a unix socket.
package dptest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/dataplane/store"
)

// Recorder is a backend double: it keeps the last state applied and fails
// when Fail is set, so tests see what would have reached the kernel.
type Recorder struct {
	mu      sync.Mutex
	Applied *model.State
	Fail    error
	Full    int
	// Delay, when set, makes every Apply take that long, failing with the
	// context's error should it end first, as a kernel backend would.
	Delay time.Duration
}

// Name implements dataplane.Backend.
func (b *Recorder) Name() string { return "recorder" }

// Apply implements dataplane.Backend.
func (b *Recorder) Apply(ctx context.Context, want *model.Resolved, _ *model.Delta, full bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Delay > 0 {
		select {
		case <-time.After(b.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if b.Fail != nil {
		return b.Fail
	}
	if full {
		b.Full++
	}
	b.Applied = want.State()
	return nil
}

// Uninstall implements dataplane.Backend.
func (b *Recorder) Uninstall(context.Context) error { return nil }

// Status implements dataplane.Backend.
func (b *Recorder) Status() map[string]any { return map[string]any{"recorded": true} }

// NoDevices is a Devices double that creates nothing.
type NoDevices struct{}

func (NoDevices) EnsureBridge(*model.RNetwork) (bool, error) { return false, nil }
func (NoDevices) DeleteBridge(string) error                  { return nil }
func (NoDevices) EnsureEndpoint(*model.REndpoint) error      { return nil }
func (NoDevices) DeleteEndpoint(*model.REndpoint) error      { return nil }
func (NoDevices) EnsureForwarding(bool) error                { return nil }

// The node checks accept everything: there is no node to ask.
func (NoDevices) CheckNetns(*model.REndpoint) error { return nil }
func (NoDevices) CheckHostIP(*model.RPort) error    { return nil }
func (NoDevices) CheckUplinks(model.Settings) error { return nil }

// StartAgent serves the real API for be on a socket in dir, with state in
// dir/state, and stops at cleanup. It returns the socket path.
func StartAgent(t testing.TB, dir string, be dataplane.Backend) string {
	t.Helper()
	return StartAgentWith(t, dir, be, nil)
}

// StartAgentWith is StartAgent with configure (when not nil) run on the API
// server before it serves, for tests that shorten its limits.
func StartAgentWith(t testing.TB, dir string, be dataplane.Backend, configure func(*api.Server)) string {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec, err := dataplane.NewReconciler(be, NoDevices{}, st, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "pc.sock")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	as := api.NewServer(rec, map[string]any{"backend_reason": "test"}, log)
	if configure != nil {
		configure(as)
	}
	srv := &http.Server{Handler: as.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); st.Close() })
	return sock
}
