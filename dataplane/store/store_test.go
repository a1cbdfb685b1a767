package store

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

// replay loads dir as the agent does (the snapshot resolved as it is
// streamed), and checks that reading it whole (pcctl's way) gives the same.
func replay(t *testing.T, dir string) *model.State {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.LoadResolved()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	whole, _, err := ReadResolved(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.State(), whole.State()) {
		t.Errorf("streamed load\n%+v\ndiffers from the whole file's\n%+v", r.State(), whole.State())
	}
	return r.State()
}

// tearJournal leaves half a line at the end of dir's journal, as a crash in
// the middle of an append does.
func tearJournal(t *testing.T, dir string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(`{"kind":"network","netw`); err != nil {
		t.Fatal(err)
	}
}

// record applies ops to r and appends them to s, as the reconciler does
// with each change.
func record(t *testing.T, s *Store, r *model.Resolved, ops ...model.Op) {
	t.Helper()
	for _, op := range ops {
		if _, err := r.Do(op); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(op); err != nil {
			t.Fatal(err)
		}
	}
}

// threeOps: a network, an endpoint on it, a mapping to the endpoint.
func threeOps() []model.Op {
	return []model.Op{
		{Kind: "network", Network: &model.Network{Name: "n", Bridge: "pc0", Subnet: "172.17.0.0/16"}},
		{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "a", Network: "n", IP: "172.17.0.2", Netns: "/run/netns/a"}},
		{Kind: "port", Port: &model.PortMapping{ID: "p", Endpoint: "a", Proto: "tcp", HostPort: 8080, Port: 80}},
	}
}

func TestJournalSnapshotAndTornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := model.NewResolved()
	ops := threeOps()
	record(t, s, r, ops[:2]...)
	if err := s.Compact(r.State()); err != nil {
		t.Fatal(err)
	}
	record(t, s, r, ops[2], model.Op{Kind: "endpoint", Delete: true, Key: "a"})
	s.Close()
	if got := replay(t, dir); !reflect.DeepEqual(got, r.State()) {
		t.Fatalf("replayed %+v, want %+v", got, r.State())
	}

	// A crash in the middle of an append leaves a torn line: it is dropped,
	// and the next append starts on a line of its own.
	tearJournal(t, dir)
	if got := replay(t, dir); !reflect.DeepEqual(got, r.State()) {
		t.Fatal("torn tail changed the state")
	}
	s, _ = Open(dir)
	s.Load()
	record(t, s, r, model.Op{Kind: "network", Network: &model.Network{Name: "m", Bridge: "pc1", Subnet: "172.18.0.0/16"}})
	s.Close()
	if got := replay(t, dir); !reflect.DeepEqual(got, r.State()) {
		t.Fatal("append after a torn tail was lost")
	}
}

// conflicting is a history whose replay fails if an operation is applied
// twice: a re-run of the first put of "a" clashes with "b", which took its
// address after "a" was deleted.
func conflicting() []model.Op {
	return []model.Op{
		{Kind: "network", Network: &model.Network{Name: "n", Bridge: "pc0", Subnet: "172.17.0.0/16"}},
		{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "a", Network: "n", IP: "172.17.0.2", Netns: "/run/netns/a"}},
		{Kind: "endpoint", Delete: true, Key: "a"},
		{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "b", Network: "n", IP: "172.17.0.2", Netns: "/run/netns/b"}},
	}
}

func TestBackgroundCompaction(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, SyncInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	r := model.NewResolved()
	ops := conflicting()
	record(t, s, r, ops[:3]...)
	if err := s.Compact(r.State()); err != nil {
		t.Fatal(err)
	}
	if s.lines != 0 {
		t.Fatalf("journal not rotated: %d lines", s.lines)
	}
	r.Do(ops[3])
	if err := s.Append(ops[3]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, oldJournalName)); !os.IsNotExist(err) {
		t.Fatalf("old journal still there after the snapshot was written: %v", err)
	}
	if got := replay(t, dir); !reflect.DeepEqual(got, r.State()) {
		t.Fatalf("replayed %+v, want %+v", got, r.State())
	}
}

// TestCompactionCrashWindows lays out the files as a crash leaves them at
// each step of a compaction and checks that all load to the same state.
func TestCompactionCrashWindows(t *testing.T) {
	ops := append(conflicting(), model.Op{Kind: "port", Port: &model.PortMapping{ID: "p", Endpoint: "b", Proto: "tcp", HostPort: 8080, Port: 80}})
	want := model.NewResolved()
	for _, op := range ops {
		want.Do(op)
	}
	journal := func(first uint64, ops ...model.Op) string {
		var b strings.Builder
		for i, op := range ops {
			line, _ := json.Marshal(entry{Seq: first + uint64(i), Op: op})
			b.Write(append(line, '\n'))
		}
		return b.String()
	}
	mid := model.NewResolved()
	for _, op := range ops[:4] {
		mid.Do(op)
	}
	snap, _ := json.Marshal(snapshot{Seq: 4, State: mid.State()})
	for name, files := range map[string]map[string]string{
		"rotated, snapshot not written": {
			oldJournalName: journal(1, ops[:4]...),
			journalName:    journal(5, ops[4]),
		},
		"snapshot written, old journal not removed": {
			snapshotName:   string(snap),
			oldJournalName: journal(1, ops[:4]...),
			journalName:    journal(5, ops[4]),
		},
		"foreground: snapshot written, journal not truncated": {
			snapshotName: string(snap),
			journalName:  journal(1, ops...),
		},
		"done": {
			snapshotName: string(snap),
			journalName:  journal(5, ops[4]),
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for f, text := range files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := replay(t, dir); !reflect.DeepEqual(got, want.State()) {
				t.Fatalf("loaded %+v, want %+v", got, want.State())
			}
			// The next compaction retires whatever an interrupted one left.
			s, _ := Open(dir)
			s.Load()
			if err := s.Compact(want.State()); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if _, err := os.Stat(filepath.Join(dir, oldJournalName)); !os.IsNotExist(err) {
				t.Fatalf("old journal left: %v", err)
			}
			if got := replay(t, dir); !reflect.DeepEqual(got, want.State()) {
				t.Fatalf("after compaction loaded %+v, want %+v", got, want.State())
			}
		})
	}
}

func TestSyncInterval(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, SyncInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	op := model.Op{Kind: "network", Network: &model.Network{Name: "n", Bridge: "pc0", Subnet: "172.17.0.0/16"}}
	if err := s.Append(op); err != nil {
		t.Fatal(err)
	}
	// Written before Append returns: another reader (a restarted agent)
	// sees it at once, synced or not.
	c, err := read(dir, false, false)
	if err != nil || len(c.ops) != 1 {
		t.Fatalf("journal right after Append: %+v, %v", c, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		dirty := s.dirty
		s.mu.Unlock()
		if !dirty {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sync timer never synced the journal")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, SyncInterval(-time.Second)); err == nil || !strings.Contains(err.Error(), "-1s") {
		t.Fatalf("negative interval: %v", err)
	}
}
