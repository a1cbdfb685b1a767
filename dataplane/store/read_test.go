package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

// dirState is every file of dir with its content and modification time.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out[e.Name()] = fi.ModTime().Format(time.RFC3339Nano) + " " + string(b)
	}
	return out
}

// Read sees what Load sees, skips a torn tail without cutting it off, and
// writes nothing, in a missing directory neither.
func TestReadIsReadOnly(t *testing.T) {
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
	record(t, s, r, ops[2])
	s.Close()
	tearJournal(t, dir)

	before := dirState(t, dir)
	got, torn, err := ReadResolved(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(torn) != 1 || torn[0].Path != filepath.Join(dir, journalName) {
		t.Errorf("torn lines: %v, want the journal's last", torn)
	}
	if !reflect.DeepEqual(got.State(), r.State()) {
		t.Errorf("read %+v, want %+v", got.State(), r.State())
	}
	if after := dirState(t, dir); !reflect.DeepEqual(after, before) {
		t.Errorf("Read changed the directory:\nbefore %q\nafter  %q", before, after)
	}
	if ld := replay(t, dir); !reflect.DeepEqual(ld, got.State()) {
		t.Errorf("Load and Read disagree: %+v vs %+v", ld, got.State())
	}

	// Killed between the rotation of the journal and the snapshot of a
	// compaction: the operations of the old journal count too.
	mid := t.TempDir()
	s, err = Open(mid)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops[:2] {
		s.Append(op)
	}
	s.Close()
	if err := os.Rename(filepath.Join(mid, journalName), filepath.Join(mid, oldJournalName)); err != nil {
		t.Fatal(err)
	}
	s, _ = Open(mid)
	s.Load()
	s.Append(ops[2])
	s.Close()
	before = dirState(t, mid)
	if got, _, err := ReadResolved(mid); err != nil || !reflect.DeepEqual(got.State(), r.State()) {
		t.Errorf("read mid-compaction: %v, %v", got, err)
	}
	if after := dirState(t, mid); !reflect.DeepEqual(after, before) {
		t.Errorf("Read changed the directory mid-compaction")
	}

	missing := filepath.Join(dir, "nothing-here")
	if _, _, _, err := Read(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of a missing directory: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Error("Read created the missing directory")
	}
	empty := t.TempDir()
	st, ops2, _, err := Read(empty)
	if err != nil || len(st.Networks) != 0 || len(ops2) != 0 {
		t.Errorf("Read of an empty directory: %v %v %v", st, ops2, err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("Read created %v", ents)
	}
}
