package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHoldLockHelper is not a test: run as a child process by
// TestSecondAgentOtherProcess, it opens the store of $PC_STORE_HOLD as an
// agent does, says so, and holds it until its stdin closes.
func TestHoldLockHelper(t *testing.T) {
	dir := os.Getenv("PC_STORE_HOLD")
	if dir == "" {
		t.Skip("helper process of TestSecondAgentOtherProcess")
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin)
}

// A second agent on a state directory fails at once, naming the directory
// and the first one's pid; readers fail at once too, without blocking.
// Once the first is gone both work.
func TestSecondAgentOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldLockHelper$")
	cmd.Env = append(os.Environ(), "PC_STORE_HOLD="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "holding\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	pid := fmt.Sprintf("pid %d", cmd.Process.Pid)

	_, err := Open(dir)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), dir+" is held by another portcullisd ("+pid+" holds") {
		t.Errorf("second agent: %v, want ErrInUse naming %s and %s", err, dir, pid)
	}
	_, _, _, err = Read(dir)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "portcullisd ("+pid+") holds "+dir) {
		t.Errorf("reader: %v, want ErrInUse naming %s", err, pid)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if _, _, _, err := Read(dir); err != nil {
		t.Errorf("reader after the agent stopped: %v", err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("agent after the first stopped: %v", err)
	}
	s.Close()
}

// flock locks belong to open files, so two Stores in one process exclude
// each other as two agents do.
func TestSecondAgentSameProcess(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second Store: %v", err)
	}
	first.Close()
	second, err := Open(dir)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	if err := second.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Remove left the directory: %v", err)
	}
}

// An agent starting while a reader reads waits for it; a reader that
// holds on past readerWait fails the start, saying so.
func TestAgentWaitsForReaders(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir) // creates the lock file
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	release, err := lockReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	go func(release func()) {
		time.Sleep(50 * time.Millisecond)
		release()
	}(release)
	s, err = Open(dir)
	if err != nil {
		t.Fatalf("start during a read: %v", err)
	}
	s.Close()

	defer func(d time.Duration) { readerWait = d }(readerWait)
	readerWait = 20 * time.Millisecond
	release, err = lockReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	_, err = Open(dir)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "still being read after 20ms (pcctl holds "+filepath.Join(dir, lockName)) {
		t.Errorf("start under a stuck reader: %v", err)
	}
}
