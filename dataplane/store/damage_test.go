package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

// networkOps are n puts of distinct networks.
func networkOps(n int) []model.Op {
	ops := make([]model.Op, n)
	for i := range ops {
		ops[i] = model.Op{Kind: "network", Network: &model.Network{
			Name: fmt.Sprintf("n%d", i+1), Bridge: fmt.Sprintf("pc%d", i+1), Subnet: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)}}
	}
	return ops
}

// agent100 is a directory an agent acknowledged 100 changes in, with the
// journal lines it wrote: stopped cleanly, or killed (its files copied
// while it runs, as a kill leaves them).
func agent100(t *testing.T, killed bool) (dir string, lines [][]byte) {
	t.Helper()
	dir = t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	record(t, s, model.NewResolved(), networkOps(100)...)
	if killed {
		dir = copyDir(t, dir)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	lines = bytes.SplitAfter(b, []byte("\n"))
	return dir, lines[:len(lines)-1] // the empty string after the last newline
}

func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	if err := os.CopyFS(out, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return out
}

func writeJournal(t *testing.T, dir string, lines ...[]byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, journalName), bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// filesState is dirState but for the lock file, which every Open rewrites.
func filesState(t *testing.T, dir string) map[string]string {
	m := dirState(t, dir)
	delete(m, lockName)
	return m
}

// load opens dir as the agent does and loads it, with the log in a buffer.
func load(t *testing.T, dir string) (int, string, error) {
	t.Helper()
	var log bytes.Buffer
	s, err := Open(dir, Logger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, ops, err := s.Load()
	if err != nil {
		return 0, log.String(), err
	}
	r, err := Resolve(snap, ops)
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Networks), log.String(), nil
}

// A crash in the middle of the last append leaves a line without its
// newline: the agent starts with every change before it, cuts it off and
// logs what it held, and appends go on after it.
func TestTornLastLineIsCut(t *testing.T) {
	dir, lines := agent100(t, true)
	next, _ := json.Marshal(entry{Seq: 101, Op: networkOps(101)[100]})
	torn := next[:len(next)/2]
	writeJournal(t, dir, append(lines[:100:100], torn)...)

	n, log, err := load(t, dir)
	if err != nil || n != 100 {
		t.Fatalf("loaded %d networks, %v; want the 100 before the torn line", n, err)
	}
	for _, want := range []string{filepath.Join(dir, journalName), "line=101", fmt.Sprintf("bytes=%d", len(torn)), strings.ReplaceAll(string(torn[:20]), `"`, `\"`)} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, journalName))
	if !bytes.Equal(b, bytes.Join(lines, nil)) {
		t.Errorf("journal after the cut is not its 100 whole lines:\n%s", b[max(0, len(b)-200):])
	}
	s, _ := Open(dir)
	s.Load()
	if err := s.Append(networkOps(101)[100]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n, log, err := load(t, dir); err != nil || n != 101 || log != "" {
		t.Errorf("after an append past the cut: %d networks, %v, log %q", n, err, log)
	}
}

// A bad line with more after it is damage, not a crash mid-append: the
// agent refuses to start, names the file and line and how to recover, and
// changes nothing; following the advice starts it with what came before.
func TestDamageBeforeTheEndRefusesToStart(t *testing.T) {
	dir, lines := agent100(t, false)
	garbled := append(bytes.Repeat([]byte{0}, len(lines[39])-1), '\n')
	writeJournal(t, dir, append(append(lines[:39:39], garbled), lines[40:]...)...)
	before := filesState(t, dir)

	_, _, err := load(t, dir)
	path := filepath.Join(dir, journalName)
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("load of a journal with a bad line 40: %v, want ErrDamaged", err)
	}
	for _, want := range []string{"journal " + path + " line 40:", "keep its first 39 lines (head -n 39)", syncedName + ", which still counts them"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if after := filesState(t, dir); !reflect.DeepEqual(after, before) {
		t.Error("a refused load changed the directory")
	}
	if _, _, _, rerr := Read(dir); !errors.Is(rerr, ErrDamaged) {
		t.Errorf("Read of the same directory: %v", rerr)
	}

	writeJournal(t, dir, lines[:39]...) // head -n 39
	os.Remove(filepath.Join(dir, syncedName))
	if n, _, err := load(t, dir); err != nil || n != 39 {
		t.Errorf("after keeping the first 39 lines: %d networks, %v", n, err)
	}
}

// Acknowledged changes cut out of the journal, as far as they can be told
// from a crash: the agent refuses to start, saying which are missing, and
// starts once the advice is followed.
func TestMissingChangesRefuseToStart(t *testing.T) {
	for _, c := range []struct {
		name    string
		killed  bool // else stopped cleanly
		cut     func(t *testing.T, dir string, lines [][]byte)
		want    []string
		recover func(t *testing.T, dir string)
		after   int // networks once recovered
	}{{
		name: "53 lines cut out of the middle",
		cut: func(t *testing.T, dir string, lines [][]byte) {
			writeJournal(t, dir, append(lines[:30:30], lines[83:]...)...)
		},
		want: []string{"line 31 holds change 84 after change 30", "line 30): changes 31-83 are missing", "cut it before line 31", syncedName + ", which still counts them"},
		recover: func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, journalName))
			writeJournal(t, dir, bytes.SplitAfter(b, []byte("\n"))[:30]...)
			os.Remove(filepath.Join(dir, syncedName))
		},
		after: 30,
	}, {
		name: "cut at a line boundary after a clean stop",
		cut: func(t *testing.T, dir string, lines [][]byte) {
			writeJournal(t, dir, lines[:47]...)
		},
		want:    []string{"had synced change 100 to disk, but the state files end at change 47", "line 47): 53 acknowledged changes are missing", syncedName + " to start without them"},
		recover: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, syncedName)) },
		after:   47,
	}, {
		name:   "cut at a line boundary after a kill",
		killed: true,
		cut: func(t *testing.T, dir string, lines [][]byte) {
			writeJournal(t, dir, lines[:47]...)
		},
		want:    []string{"had synced change 100 to disk, but the state files end at change 47", "53 acknowledged changes are missing"},
		recover: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, syncedName)) },
		after:   47,
	}, {
		name:   "cut mid-line after a kill",
		killed: true,
		cut: func(t *testing.T, dir string, lines [][]byte) {
			writeJournal(t, dir, append(lines[:47:47], lines[47][:10])...)
		},
		want:    []string{"end at change 47", "53 acknowledged changes are missing", "line 48 (offset", "has no newline"},
		recover: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, syncedName)) },
		after:   47,
	}, {
		name: "journal without its snapshot",
		cut: func(t *testing.T, dir string, lines [][]byte) {
			writeJournal(t, dir, lines[60:]...)
			snap, _ := json.Marshal(snapshot{Seq: 50, State: model.NewState()})
			os.WriteFile(filepath.Join(dir, snapshotName), snap, 0o600)
		},
		want: []string{"line 1 holds change 61, but snapshot", "ends at change 50: changes 51-60 are missing", "move the journals aside", syncedName + ", which still counts them"},
		recover: func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, journalName), filepath.Join(dir, "journal.damaged"))
			os.Remove(filepath.Join(dir, syncedName))
		},
		after: 0, // the snapshot the test wrote is empty
	}} {
		t.Run(c.name, func(t *testing.T) {
			dir, lines := agent100(t, c.killed)
			c.cut(t, dir, lines)
			before := filesState(t, dir)
			_, _, err := load(t, dir)
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("load: %v, want ErrDamaged", err)
			}
			for _, want := range append(c.want, filepath.Join(dir, journalName)) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if after := filesState(t, dir); !reflect.DeepEqual(after, before) {
				t.Error("a refused load changed the directory")
			}
			c.recover(t, dir)
			if n, _, err := load(t, dir); err != nil || n != c.after {
				t.Errorf("after recovering as told: %d networks, %v; want %d", n, err, c.after)
			}
		})
	}
}

// Journals written before lines were numbered load, and numbering starts
// after them.
func TestUnnumberedJournalLoads(t *testing.T) {
	dir := t.TempDir()
	var old [][]byte
	for _, op := range networkOps(3) {
		b, _ := json.Marshal(op)
		old = append(old, append(b, '\n'))
	}
	writeJournal(t, dir, old...)
	if n, _, err := load(t, dir); err != nil || n != 3 {
		t.Fatalf("unnumbered journal: %d networks, %v", n, err)
	}
	s, _ := Open(dir)
	s.Load()
	record(t, s, model.NewResolved(), networkOps(4)[3])
	s.Close()
	if n, _, err := load(t, dir); err != nil || n != 4 {
		t.Fatalf("unnumbered then numbered: %d networks, %v", n, err)
	}
}

// With a sync interval the record follows the timer's syncs: a journal
// cut below the last synced change is refused after a kill too.
func TestSyncedRecordFollowsTheTimer(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, SyncInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	record(t, s, model.NewResolved(), networkOps(5)...)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(dir, syncedName))
		var rec synced
		if json.Unmarshal(b, &rec) == nil && rec.Seq == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("synced record after the timer: %q", b)
		}
	}
	killed := copyDir(t, dir)
	b, _ := os.ReadFile(filepath.Join(killed, journalName))
	writeJournal(t, killed, bytes.SplitAfter(b, []byte("\n"))[:3]...)
	if _, _, err := load(t, killed); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "had synced change 5 to disk, but the state files end at change 3") {
		t.Errorf("journal cut below the synced change: %v", err)
	}
}

// An append the file system refuses half-way is cut back off: the change
// is taken back, and the next append starts on a line of its own.
func TestFailedAppendIsCutBack(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Load()
	ops := networkOps(3)
	record(t, s, model.NewResolved(), ops[0])
	path := filepath.Join(dir, journalName)
	first, _ := os.ReadFile(path)

	// The file size limit makes the write stop part-way, then fail (Go
	// ignores SIGXFSZ, so the write returns EFBIG).
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limit := syscall.Rlimit{Cur: uint64(len(first) + 10), Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Skipf("cannot lower the file size limit: %v", err)
	}
	err = s.Append(ops[1])
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("append past the file size limit: %v, want EFBIG", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, first) {
		t.Fatalf("journal after the failed append:\n%s\nwant only\n%s", b, first)
	}
	if err := s.Append(ops[2]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n, _, err := load(t, dir); err != nil || n != 2 {
		t.Errorf("after a failed append and a good one: %d networks, %v; want 2", n, err)
	}
}

// A kill after a rotation but before the old journal was synced can leave
// its last line torn: it is cut off the same way.
func TestTornOldJournalIsCut(t *testing.T) {
	dir := t.TempDir()
	var lines [][]byte
	for i, op := range networkOps(3) {
		b, _ := json.Marshal(entry{Seq: uint64(i + 1), Op: op})
		lines = append(lines, append(b, '\n'))
	}
	old := filepath.Join(dir, oldJournalName)
	os.WriteFile(old, bytes.Join(append(lines[:2:2], lines[2][:15]), nil), 0o600)
	n, log, err := load(t, dir)
	if err != nil || n != 2 {
		t.Fatalf("loaded %d networks, %v; want the 2 before the torn line", n, err)
	}
	if !strings.Contains(log, old) || !strings.Contains(log, "line=3") {
		t.Errorf("log does not name %s line 3:\n%s", old, log)
	}
	if b, _ := os.ReadFile(old); !bytes.Equal(b, bytes.Join(lines[:2], nil)) {
		t.Errorf("old journal after the cut: %q", b)
	}
}
