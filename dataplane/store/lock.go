package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockName is the file in the state directory that the agent holds an
// exclusive flock on while it runs, and readers a shared one while they
// read. It holds the agent's pid, for the error of whoever finds it taken.
const lockName = "lock"

// readerWait bounds how long an agent starting waits for readers (pcctl)
// to finish; a read takes milliseconds, so a longer hold is a stuck reader.
var readerWait = 5 * time.Second

// ErrInUse is what opening or reading a state directory that a running
// agent holds fails with.
var ErrInUse = errors.New("state directory in use")

// lockWriter takes the exclusive lock of dir and writes this process's pid
// into it. Two agents on one directory would each replay and append to the
// same journal, overwriting each other's changes, so the second one fails
// at once; readers holding the lock are waited for, up to readerWait.
func lockWriter(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	deadline := time.Now().Add(readerWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !onlyReaders(path) {
			f.Close()
			return nil, fmt.Errorf("%w: %s is held by another portcullisd (%s holds %s); two agents on one state directory overwrite each other's changes: stop the other one, or give this one its own -state-dir",
				ErrInUse, dir, holder(path), path)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: %s is still being read after %v (pcctl holds %s); stop the stuck reader and start again",
				ErrInUse, dir, readerWait, path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Left empty at Close, so a pid read from it is the current holder's.
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write pid to %s: %w", path, err)
	}
	return f, nil
}

// unlockWriter empties the lock file and releases the lock.
func unlockWriter(f *os.File) {
	f.Truncate(0)
	f.Close() // releases the flock
}

// onlyReaders reports whether the lock of path is held in shared mode
// only: a shared lock of its own (a new open file, so a separate holder
// even within this process) is then granted.
func onlyReaders(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil
}

// holder names the process in the lock file: "pid N", or "a process" if
// the file says nothing readable yet.
func holder(path string) string {
	b, err := os.ReadFile(path)
	if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
		return "pid " + strconv.Itoa(pid)
	}
	return "a process"
}

// lockReader takes a shared lock of dir for a read that must not see an
// agent's compaction half done. It never blocks: if an agent holds dir the
// read fails with ErrInUse. A directory without a lock file has never been
// opened by an agent and is read unlocked, since a reader creates nothing.
func lockReader(dir string) (release func(), err error) {
	path := filepath.Join(dir, lockName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, fmt.Errorf("%w: portcullisd (%s) holds %s; ask it instead of reading its files", ErrInUse, holder(path), dir)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
