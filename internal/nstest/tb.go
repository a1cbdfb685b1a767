package nstest

import (
	"fmt"
	"os"
	"sync"
)

// TB is the part of testing.TB the harness uses, so that a plain program (a
// demo, a benchmark driver) can build topologies too: see Standalone.
type TB interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Failed() bool
	TempDir() string
}

// Standalone is a TB for programs that are not tests. Cleanups run in
// reverse order on Close and on Fatalf (which then exits with status 1). On
// SIGINT, SIGTERM or SIGHUP the package's own handler removes every
// namespace, mount and agent the process made, then exits with status 130.
type Standalone struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	tmp      []string
	closed   bool
}

// NewStandalone returns a Standalone. Call Close when done.
func NewStandalone() *Standalone {
	return &Standalone{}
}

// Helper does nothing; it is there to satisfy TB.
func (s *Standalone) Helper() {}

// Cleanup registers f to run on Close, last registered first.
func (s *Standalone) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// Logf prints to stderr.
func (s *Standalone) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// Errorf prints to stderr and marks the run failed.
func (s *Standalone) Errorf(format string, args ...any) {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
	s.Logf(format, args...)
}

// Fatalf prints, runs every cleanup and exits with status 1.
func (s *Standalone) Fatalf(format string, args ...any) {
	s.Errorf(format, args...)
	s.Close()
	os.Exit(1)
}

// Skipf prints, runs every cleanup and exits with status 0: a program has
// nothing to skip to.
func (s *Standalone) Skipf(format string, args ...any) {
	s.Logf("skip: "+format, args...)
	s.Close()
	os.Exit(0)
}

// Failed reports whether Errorf or Fatalf was called.
func (s *Standalone) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// TempDir returns a new directory removed on Close.
func (s *Standalone) TempDir() string {
	d, err := os.MkdirTemp("", "nstest-")
	if err != nil {
		s.Fatalf("nstest: temp dir: %v", err)
	}
	s.mu.Lock()
	s.tmp = append(s.tmp, d)
	s.mu.Unlock()
	return d
}

// Close runs the cleanups, last registered first, then removes the temp
// directories. It is safe to call more than once.
func (s *Standalone) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	fs, tmp := s.cleanups, s.tmp
	s.cleanups, s.tmp = nil, nil
	s.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	for _, d := range tmp {
		os.RemoveAll(d)
	}
}
