package ebpf

import (
	"context"
	"testing"

	"github.com/portcullis/portcullis/dataplane/model"
)

// TestDriftCounted: a full sync of maps as the last one left them counts
// no repair; one after a map entry was deleted behind the backend's back
// counts it and writes it back.
func TestDriftCounted(t *testing.T) {
	tp := newNetnsTopo(t)
	be := tp.newBackend(t)
	tp.want.Ports["web"] = &model.RPort{ID: "web", EP: tp.a, Proto: 6, HostLo: 8080, HostHi: 8080, Lo: 80}
	for i := range 2 {
		tp.do(t, func() error { return be.Apply(context.Background(), tp.want, nil, true) })
		if n := be.Repaired(); n != 0 {
			t.Fatalf("full sync %d of untouched maps counted %d repairs", i+1, n)
		}
	}
	before := dumpConfig(t, be)
	for _, e := range portEntries(tp.want.Ports["web"], uint32(1)) {
		if err := be.dp.maps[mapPorts].Delete(e.key); err != nil {
			t.Fatal(err)
		}
	}
	tp.do(t, func() error { return be.Apply(context.Background(), tp.want, nil, true) })
	if n := be.Repaired(); n == 0 {
		t.Error("a full sync that wrote back deleted entries counted no repair")
	}
	if after := dumpConfig(t, be); !sameConfig(before, after) {
		t.Errorf("maps after the repair differ from before the drift")
	}
}

// newBackend returns a tc-mode backend for the topology, uninstalled at
// cleanup; it has applied nothing yet.
func (tp *netnsTopo) newBackend(t *testing.T) *Backend {
	t.Helper()
	cfg := testConfig()
	be, err := New(Options{PinDir: testPinDir(t), Attach: AttachTC, Config: &cfg, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.ns.Do(func() error { return be.Uninstall(context.Background()) }) })
	return be
}
