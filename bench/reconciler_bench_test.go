package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/dataplane/store"
)

// Micro-benchmarks of the control plane, without a kernel: what one more
// mapping costs the model and the reconciler when 100,000 are present.
//
//	go test -run '^$' -bench . ./bench

const presentPorts = 100000

// stateWithPorts is the benchmark network (pc0, c1, c2) with n filler
// mappings to c2, as pcbench programs them.
func stateWithPorts(tb testing.TB, n int) *model.State {
	tb.Helper()
	s := model.NewState()
	s.Networks["bench"] = model.Network{Name: "bench", Bridge: bridgeName, Subnet: subnet}
	s.Endpoints["c1"] = model.Endpoint{ID: "c1", Network: "bench", IP: defaultC1.String(), HostIfname: "veth-c1", MAC: "02:42:ac:11:00:02"}
	s.Endpoints["c2"] = model.Endpoint{ID: "c2", Network: "bench", IP: defaultC2.String(), HostIfname: "veth-c2", MAC: "02:42:ac:11:00:03"}
	for _, m := range fillerMappings(n, defaultC2) {
		s.Ports[m.ID] = modelPort(m)
	}
	return s
}

func loadResolved(tb testing.TB, n int) *model.Resolved {
	tb.Helper()
	r, err := model.Load(stateWithPorts(tb, n))
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// BenchmarkModelPutPort validates and indexes one more mapping (and takes
// it back, so the state stays at 100,000).
func BenchmarkModelPutPort(b *testing.B) {
	r := loadResolved(b, presentPorts)
	k := 0
	for b.Loop() {
		d, err := r.PutPort(modelPort(addedMapping(k%4000, defaultC2)))
		if err != nil {
			b.Fatal(err)
		}
		r.Undo(d)
		k++
	}
}

// BenchmarkModelPutPortConflict is a refused mapping (host port taken):
// the lookup that must not scan the 100,000.
func BenchmarkModelPutPortConflict(b *testing.B) {
	r := loadResolved(b, presentPorts)
	taken := modelPort(fillerMapping(presentPorts/2, defaultC2))
	taken.ID = "dup"
	for b.Loop() {
		if _, err := r.PutPort(taken); err == nil {
			b.Fatal("a taken host port was accepted")
		}
	}
}

// BenchmarkModelLoad resolves a snapshot of 100,000 mappings: the agent's
// start.
func BenchmarkModelLoad(b *testing.B) {
	s := stateWithPorts(b, presentPorts)
	for b.Loop() {
		if _, err := model.Load(s); err != nil {
			b.Fatal(err)
		}
	}
}

// nopBackend accepts every change: the benchmark measures the reconciler,
// not a kernel.
type nopBackend struct{}

func (nopBackend) Name() string { return "nop" }
func (nopBackend) Apply(context.Context, *model.Resolved, *model.Delta, bool) error {
	return nil
}
func (nopBackend) Uninstall(context.Context) error { return nil }
func (nopBackend) Status() map[string]any          { return nil }

// BenchmarkReconcilerPutPort is one PUT of a mapping through the
// reconciler with 100,000 present, journal included: with and without the
// fdatasync that makes each change durable before the answer (the agent's
// default syncs in the background instead: --journal-sync).
func BenchmarkReconcilerPutPort(b *testing.B) {
	for _, interval := range []time.Duration{100 * time.Millisecond, 0} {
		b.Run(fmt.Sprintf("journal-sync=%v", interval), func(b *testing.B) {
			st, err := store.Open(b.TempDir(), store.SyncInterval(interval))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if err := st.Compact(stateWithPorts(b, presentPorts)); err != nil {
				b.Fatal(err)
			}
			rec, err := dataplane.NewReconciler(nopBackend{}, dptest.NoDevices{}, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := rec.Start(ctx); err != nil {
				b.Fatal(err)
			}
			k := 0
			for b.Loop() {
				// Alternate two host ports under one ID: every PUT is a
				// real change, and the state stays at 100,001.
				p := modelPort(addedMapping(k%2, defaultC2))
				p.ID = "added"
				if _, err := rec.Do(ctx, model.Op{Kind: "port", Port: &p}); err != nil {
					b.Fatal(err)
				}
				k++
			}
		})
	}
}
