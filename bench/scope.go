package bench

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// scope is the nstest.TB of one mode instance. Unlike nstest.Standalone it
// does not exit the process on Fatalf: it panics with a scopeAbort that
// scope.run recovers, so a mode that cannot start (the eBPF agent before its
// backend lands) ends that instance, runs its cleanups, and the benchmark
// goes on with the next one.
type scope struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	log      []string // what the harness logged, kept for a failed instance
	tmp      []string
}

// maxLogLines bounds what a scope keeps of its log.
const maxLogLines = 200

// scopeAbort carries the message of a Fatalf or Skipf out of the instance.
type scopeAbort struct {
	msg  string
	skip bool
}

// errSkipped marks an instance that skipped itself (Skipf).
var errSkipped = errors.New("skipped")

func newScope() *scope { return &scope{} }

func (s *scope) Helper() {}

func (s *scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *scope) Logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range strings.Split(strings.TrimSpace(fmt.Sprintf(format, args...)), "\n") {
		if len(s.log) < maxLogLines {
			s.log = append(s.log, l)
		}
	}
}

// logs returns what was logged.
func (s *scope) logs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *scope) Errorf(format string, args ...any) {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
	s.Logf(format, args...)
}

func (s *scope) Fatalf(format string, args ...any) {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
	panic(scopeAbort{msg: fmt.Sprintf(format, args...)})
}

func (s *scope) Skipf(format string, args ...any) {
	panic(scopeAbort{msg: fmt.Sprintf(format, args...), skip: true})
}

func (s *scope) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

func (s *scope) TempDir() string {
	d, err := os.MkdirTemp("", tempPrefix())
	if err != nil {
		s.Fatalf("temp dir: %v", err)
	}
	s.mu.Lock()
	s.tmp = append(s.tmp, d)
	s.mu.Unlock()
	return d
}

// run calls f and turns a Fatalf inside it into an error. Cleanups are not
// run here: Close does that, so the caller may still read the instance.
func (s *scope) run(f func() error) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		a, ok := r.(scopeAbort)
		if !ok {
			panic(r)
		}
		if a.skip {
			err = fmt.Errorf("%w: %s", errSkipped, a.msg)
			return
		}
		err = errors.New(a.msg)
	}()
	return f()
}

// Close runs the cleanups, last registered first, then removes the temp
// directories. A cleanup that calls Fatalf does not stop the others.
func (s *scope) Close() {
	s.mu.Lock()
	fs, tmp := s.cleanups, s.tmp
	s.cleanups, s.tmp = nil, nil
	s.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		if err := s.run(func() error { fs[i](); return nil }); err != nil {
			s.Logf("cleanup: %v", err)
		}
	}
	for _, d := range tmp {
		os.RemoveAll(d)
	}
}
