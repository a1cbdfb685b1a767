package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// syncedName is the file that records the last change known to be on disk
// in the journal: rewritten in place after each journal sync, and at
// Close. The journal can only end before it if it was cut or replaced,
// which a torn last line or a cut at a line boundary would otherwise hide.
// It is only a lower bound (a crash may lose its last update), so it never
// refuses files that are whole.
const syncedName = "synced.json"

// syncedWidth is the fixed size of the record, so that rewriting it in
// place never leaves the end of a longer one behind.
const syncedWidth = 48

type synced struct {
	Seq uint64 `json:"seq"`
}

// openSynced opens the record of dir for rewriting in place.
func openSynced(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, syncedName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", syncedName, err)
	}
	return f, nil
}

// writeSynced records seq. The journal must be synced up to it first: the
// record is then never ahead of what a power loss leaves.
func writeSynced(f *os.File, seq uint64) error {
	b, _ := json.Marshal(synced{Seq: seq})
	rec := append(b, bytes.Repeat([]byte{' '}, syncedWidth-1-len(b))...)
	if _, err := f.WriteAt(append(rec, '\n'), 0); err != nil {
		return fmt.Errorf("record synced change %d: %w", seq, err)
	}
	return nil
}

// alsoSynced completes the advice to drop changes when dir records a
// synced change, which would count them as missing.
func alsoSynced(dir string) string {
	path := filepath.Join(dir, syncedName)
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return ""
	}
	return ", and remove " + path + ", which still counts them"
}

// checkSynced compares the last change the files hold with the last one
// the agent recorded as synced: fewer means the journal was cut, at a
// line boundary or not, or replaced by an older one.
func checkSynced(dir string, seq uint64, ls []line, torn []Torn) error {
	path := filepath.Join(dir, syncedName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(bytes.TrimSpace(b)) == 0) {
		return nil // never synced anything
	}
	var rec synced
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w; it only guards against a cut journal: remove it to start without that check", path, err)
	}
	if seq >= rec.Seq {
		return nil
	}
	where := "no journal line"
	if len(ls) > 0 {
		l := ls[len(ls)-1]
		where = fmt.Sprintf("%s line %d", l.path, l.n)
	}
	for _, t := range torn {
		where += "; " + t.String()
	}
	return fmt.Errorf("%w: the agent had synced change %d to disk, but the state files end at change %d (%s): %d acknowledged changes are missing (the journal was cut or replaced); restore it from a backup, or remove %s to start without them",
		ErrDamaged, rec.Seq, seq, where, rec.Seq-seq, path)
}
