package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/portcullis/portcullis/dataplane/model"
)

// ErrDamaged is what loading fails with when the state files lost or
// garbled changes that were acknowledged: a bad journal line with more
// after it, a gap in the sequence numbers, or files that end before the
// last change the agent synced to disk. Starting would silently drop them.
var ErrDamaged = errors.New("state files damaged")

// Torn is a journal's last line without its newline: an append that a
// crash cut short, so it was never acknowledged. The agent cuts it off;
// a reader leaves it in place.
type Torn struct {
	Path   string
	Line   int
	Offset int64  // where the line starts
	Text   []byte // what it holds
}

func (t Torn) String() string {
	text := t.Text
	if len(text) > 120 {
		text = text[:120]
	}
	return fmt.Sprintf("%s line %d (offset %d, %d bytes: %q) has no newline", t.Path, t.Line, t.Offset, len(t.Text), text)
}

// contents is what the state files of a directory load to.
type contents struct {
	state *model.State    // read without resolving
	want  *model.Resolved // or the snapshot resolved as it was read
	ops   []model.Op      // journalled after the snapshot, in order
	seq   uint64          // of the last change
	lines int             // entries in the current journal
	torn  []Torn
}

// line is a journal entry and where it was read.
type line struct {
	entry
	path string
	n    int
}

// read loads the state files of dir and checks that no acknowledged change
// is missing. With cut it truncates a torn last journal line so the next
// append starts on a line of its own; without, it writes nothing. With
// resolve the snapshot is resolved as it is read (contents.want), else
// decoded (contents.state).
func read(dir string, cut, resolve bool) (*contents, error) {
	var snap snapshot
	var want *model.Resolved
	var err error
	if resolve {
		want, snap.Seq, err = resolveSnapshot(dir)
	} else {
		snap, err = readSnapshot(dir)
	}
	if err != nil {
		return nil, err
	}
	c := &contents{state: snap.State, want: want, seq: snap.Seq}
	var all []line
	for _, name := range []string{oldJournalName, journalName} {
		ls, torn, err := readJournal(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if torn != nil {
			c.torn = append(c.torn, *torn)
		}
		all = append(all, ls...)
		c.lines = len(ls)
	}
	if err := checkSequence(dir, snap.Seq, all); err != nil {
		return nil, err
	}
	for _, l := range all {
		if l.Seq != 0 && l.Seq <= snap.Seq {
			continue // the snapshot has it
		}
		c.ops = append(c.ops, l.Op)
		c.seq = max(c.seq, l.Seq)
	}
	if err := checkSynced(dir, c.seq, all, c.torn); err != nil {
		return nil, err
	}
	// Cut only once the files passed every check: a refused start leaves
	// them as they were, for whoever repairs them.
	for i := 0; cut && i < len(c.torn); i++ {
		if err := os.Truncate(c.torn[i].Path, c.torn[i].Offset); err != nil {
			return nil, fmt.Errorf("cut torn journal tail: %s: %w", c.torn[i], err)
		}
	}
	return c, nil
}

func readSnapshot(dir string) (snapshot, error) {
	snap := snapshot{State: model.NewState()}
	path := filepath.Join(dir, snapshotName)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return snap, fmt.Errorf("read snapshot: %w", err)
	default:
		if err := json.Unmarshal(b, &snap); err != nil {
			return snap, fmt.Errorf("%w: snapshot %s: %w; restore it from a backup (it is replaced whole, never appended to)", ErrDamaged, path, err)
		}
	}
	return snap, nil
}

// readJournal returns the entries of the journal at path and its torn last
// line. A line that does not parse with more after it is damage, not a
// crash mid-append, and fails the read.
func readJournal(path string) ([]line, *Torn, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("read journal: %w", err)
	}
	var ls []line
	for off, n := 0, 1; off < len(b); n++ {
		end := bytes.IndexByte(b[off:], '\n')
		if end < 0 {
			// Appends write the line and its newline at once: without
			// the newline the append never completed, nor was answered.
			return ls, &Torn{Path: path, Line: n, Offset: int64(off), Text: b[off:]}, nil
		}
		l := line{path: path, n: n}
		if err := json.Unmarshal(b[off:off+end], &l.entry); err != nil {
			return nil, nil, fmt.Errorf("%w: journal %s line %d: %w; the lines from there on cannot be trusted: save a copy, then restore the journal from a backup, or keep its first %d lines (head -n %d) to start without the changes from line %d on%s",
				ErrDamaged, path, n, err, n-1, n-1, n, alsoSynced(filepath.Dir(path)))
		}
		ls = append(ls, l)
		off += end + 1
	}
	return ls, nil, nil
}

// checkSequence finds changes missing from the journals: every numbered
// entry follows the one before it, and the first one after the snapshot
// follows the snapshot. Entries without a number (journals written before
// numbering) are not checked.
func checkSequence(dir string, snapSeq uint64, ls []line) error {
	var prev *line
	for i := range ls {
		l := &ls[i]
		if l.Seq == 0 {
			continue
		}
		switch {
		case prev == nil && l.Seq > snapSeq+1:
			return fmt.Errorf("%w: journal %s line %d holds change %d, but snapshot %s ends at change %d: changes %d-%d are missing (a journal was removed or the snapshot replaced by an older one); restore them from a backup, or move the journals aside to start from the snapshot alone (their changes are lost)%s",
				ErrDamaged, l.path, l.n, l.Seq, filepath.Join(dir, snapshotName), snapSeq, snapSeq+1, l.Seq-1, alsoSynced(dir))
		case prev != nil && l.Seq != prev.Seq+1:
			what := fmt.Sprintf("changes %d-%d are missing", prev.Seq+1, l.Seq-1)
			if l.Seq <= prev.Seq {
				what = "the numbering goes back (lines from another journal?)"
			}
			return fmt.Errorf("%w: journal %s line %d holds change %d after change %d (%s line %d): %s; save a copy, then restore the journal from a backup, or cut it before line %d to start without the changes from there on%s",
				ErrDamaged, l.path, l.n, l.Seq, prev.Seq, prev.path, prev.n, what, l.n, alsoSynced(dir))
		}
		prev = l
	}
	return nil
}
