// Package store keeps the agent's desired state on disk: a snapshot written
// atomically (temporary file, fsync, rename) plus a journal of the changes
// made since, one JSON line each, so one change costs one append whatever
// the size of the state. A torn last line (crash mid-write) is ignored.
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

const (
	snapshotName = "state.json"
	journalName  = "journal.jsonl"
	// compactAfter is the journal length that triggers a new snapshot.
	compactAfter = 4096
)

// Store is a state directory. It is not safe for concurrent use.
type Store struct {
	dir     string
	journal *os.File
	lines   int
	// Sync makes every append durable (fdatasync) before it returns.
	Sync bool
}

// Open creates dir if needed and opens the journal for appending.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	s := &Store{dir: dir, Sync: true}
	return s, s.openJournal()
}

func (s *Store) openJournal() error {
	f, err := os.OpenFile(filepath.Join(s.dir, journalName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	s.journal = f
	return nil
}

// Load returns the snapshot and the journalled operations after it.
func (s *Store) Load() (*model.State, []model.Op, error) {
	st := model.NewState()
	b, err := os.ReadFile(filepath.Join(s.dir, snapshotName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, nil, fmt.Errorf("read snapshot: %w", err)
	default:
		if err := json.Unmarshal(b, st); err != nil {
			return nil, nil, fmt.Errorf("parse snapshot %s: %w", filepath.Join(s.dir, snapshotName), err)
		}
	}
	ops, err := s.readJournal()
	s.lines = len(ops)
	return st, ops, err
}

func (s *Store) readJournal() ([]model.Op, error) {
	path := filepath.Join(s.dir, journalName)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var ops []model.Op
	for off, n := 0, 1; off < len(b); n++ {
		end := bytes.IndexByte(b[off:], '\n')
		if end < 0 {
			// A torn last line: the change it held never completed. Cut it
			// off so the next append starts on a line of its own.
			if err := os.Truncate(path, int64(off)); err != nil {
				return nil, fmt.Errorf("cut torn journal tail: %w", err)
			}
			break
		}
		var op model.Op
		if err := json.Unmarshal(b[off:off+end], &op); err != nil {
			return nil, fmt.Errorf("journal %s line %d: %w", path, n, err)
		}
		ops = append(ops, op)
		off += end + 1
	}
	return ops, nil
}

// Append journals one operation. Compact is the caller's to call when
// NeedsCompaction says so.
func (s *Store) Append(op model.Op) error {
	b, err := json.Marshal(op)
	if err != nil {
		return fmt.Errorf("encode journal entry: %w", err)
	}
	if _, err := s.journal.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("append to journal: %w", err)
	}
	if s.Sync {
		if err := s.journal.Sync(); err != nil {
			return fmt.Errorf("sync journal: %w", err)
		}
	}
	s.lines++
	return nil
}

// NeedsCompaction reports whether the journal has grown long enough that a
// new snapshot should replace it.
func (s *Store) NeedsCompaction() bool { return s.lines >= compactAfter }

// Compact writes st as the new snapshot and empties the journal. A crash in
// between leaves a journal whose replay on the new snapshot changes nothing.
func (s *Store) Compact(st *model.State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(s.dir, snapshotName), b); err != nil {
		return err
	}
	if err := s.journal.Truncate(0); err != nil {
		return fmt.Errorf("truncate journal: %w", err)
	}
	s.lines = 0
	return nil
}

// Close closes the journal.
func (s *Store) Close() error { return s.journal.Close() }

// Remove deletes the state directory's files (for uninstall).
func (s *Store) Remove() error {
	s.journal.Close()
	for _, n := range []string{snapshotName, journalName} {
		if err := os.Remove(filepath.Join(s.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	os.Remove(s.dir) // only if empty
	return nil
}

// WriteFileAtomic writes b to path through a synced temporary file and a
// rename, so readers see the old or the new content, never a mix.
func WriteFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
