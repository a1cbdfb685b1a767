package store

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/portcullis/portcullis/dataplane/model"
)

func replay(t *testing.T, dir string) *model.State {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, ops, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	r, err := model.Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if _, err := r.Do(op); err != nil {
			t.Fatal(err)
		}
	}
	return r.State()
}

func TestJournalSnapshotAndTornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := model.NewResolved()
	ops := []model.Op{
		{Kind: "network", Network: &model.Network{Name: "n", Bridge: "pc0", Subnet: "172.17.0.0/16"}},
		{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "a", Network: "n", IP: "172.17.0.2", Netns: "/run/netns/a"}},
		{Kind: "port", Port: &model.PortMapping{ID: "p", Endpoint: "a", Proto: "tcp", HostPort: 8080, Port: 80}},
	}
	for _, op := range ops[:2] {
		r.Do(op)
		if err := s.Append(op); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Compact(r.State()); err != nil {
		t.Fatal(err)
	}
	r.Do(ops[2])
	s.Append(ops[2])
	s.Append(model.Op{Kind: "endpoint", Delete: true, Key: "a"})
	r.Do(model.Op{Kind: "endpoint", Delete: true, Key: "a"})
	s.Close()
	if got := replay(t, dir); !reflect.DeepEqual(got, r.State()) {
		t.Fatalf("replayed %+v, want %+v", got, r.State())
	}

	// A crash in the middle of an append leaves a torn line: it is dropped,
	// and the next append starts on a line of its own.
	f, _ := os.OpenFile(filepath.Join(dir, journalName), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"kind":"network","netw`)
	f.Close()
	if got := replay(t, dir); !reflect.DeepEqual(got, r.State()) {
		t.Fatal("torn tail changed the state")
	}
	s, _ = Open(dir)
	s.Load()
	op := model.Op{Kind: "network", Network: &model.Network{Name: "m", Bridge: "pc1", Subnet: "172.18.0.0/16"}}
	if err := s.Append(op); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r.Do(op)
	if got := replay(t, dir); !reflect.DeepEqual(got, r.State()) {
		t.Fatal("append after a torn tail was lost")
	}
}
