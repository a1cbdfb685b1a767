package dataplane_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/dataplane/store"
)

// flaky is a backend that fails its next fails applies, then records the
// state it is given.
type flaky struct {
	mu      sync.Mutex
	fails   int
	applied *model.State
	full    int
}

func (b *flaky) Name() string                    { return "flaky" }
func (b *flaky) Uninstall(context.Context) error { return nil }
func (b *flaky) Status() map[string]any          { return nil }

func (b *flaky) Apply(_ context.Context, want *model.Resolved, _ *model.Delta, full bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fails > 0 {
		b.fails--
		return errors.New("kernel said no")
	}
	if full {
		b.full++
	}
	b.applied = want.State()
	return nil
}

func (b *flaky) failNext(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails = n
}

func (b *flaky) state() (*model.State, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.applied, b.full
}

func newRunner(t *testing.T, be dataplane.Backend) (*dataplane.Reconciler, *dataplane.SyncRunner) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := dataplane.NewReconciler(be, dptest.NoDevices{}, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// A period far longer than the test: every resync seen is a retry or
	// follows a failure.
	r, err := dataplane.NewSyncRunner(rec, time.Hour, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return rec, r
}

// waitRepairs waits (bounded) until the runner counted n repairs.
func waitRepairs(t *testing.T, r *dataplane.SyncRunner, n uint64) dataplane.SyncStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := r.Stats()
		if st.Repairs >= n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no repair: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A change the backend fails leaves it needing a full sync (the restore
// failed too); the runner resyncs at once, retries with backoff while the
// backend keeps failing, and the first success is a repair that brings the
// kernel the state the API holds.
func TestSyncRunnerRetriesUntilRepaired(t *testing.T) {
	be := &flaky{}
	rec, r := newRunner(t, be)
	if _, err := rec.Do(t.Context(), model.Op{Kind: "network", Network: &model.Network{Name: "n", Bridge: "pc0", Subnet: "172.17.0.0/16"}}); err != nil {
		t.Fatal(err)
	}
	// The change and its restore fail, then the first resync and one retry.
	be.failNext(4)
	_, err := rec.Do(t.Context(), model.Op{Kind: "network", Network: &model.Network{Name: "m", Bridge: "pc1", Subnet: "172.18.0.0/16"}})
	if err == nil {
		t.Fatal("a change the backend refused was accepted")
	}
	st := waitRepairs(t, r, 1)
	if st.Syncs[dataplane.SyncFailure] != 1 || st.Syncs[dataplane.SyncRetry] != 2 || st.Failures != 2 {
		t.Errorf("resyncs %v, failures %d: want one after the failure, two retries (one failed), two failures", st.Syncs, st.Failures)
	}
	applied, _ := be.state()
	if _, ok := applied.Networks["n"]; !ok || len(applied.Networks) != 1 {
		t.Errorf("after the repair the backend holds networks %v, want only n", applied.Networks)
	}
}

// Bad input is no reason to resync: nothing reached the backend.
func TestSyncRunnerIgnoresBadInput(t *testing.T) {
	be := &flaky{}
	rec, r := newRunner(t, be)
	_, before := be.state()
	if _, err := rec.Do(t.Context(), model.Op{Kind: "network", Network: &model.Network{Name: "n", Bridge: "pc0", Subnet: "not a subnet"}}); err == nil {
		t.Fatal("bad subnet accepted")
	}
	// Control: a failed change does kick it.
	be.failNext(2)
	rec.Do(t.Context(), model.Op{Kind: "network", Network: &model.Network{Name: "m", Bridge: "pc1", Subnet: "172.18.0.0/16"}})
	st := waitRepairs(t, r, 1)
	if st.Syncs[dataplane.SyncFailure] != 1 || len(st.Syncs) != 1 {
		t.Errorf("resyncs %v, want exactly one, after the failed change", st.Syncs)
	}
	if _, after := be.state(); after != before+1 {
		t.Errorf("%d full syncs after bad input and one failed change, want %d", after, before+1)
	}
}

func TestSyncRunnerPeriod(t *testing.T) {
	if _, err := dataplane.NewSyncRunner(nil, 10*time.Millisecond, 0); err == nil {
		t.Error("a resync period of 10ms accepted")
	}
}
