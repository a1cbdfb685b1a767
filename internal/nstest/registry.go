package nstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// registryRoot holds one directory per live test process, named
// <pid>-<start time>, with one file per namespace, mount or child process it
// made. A process killed before its cleanups ran (SIGKILL, go test -timeout)
// leaves its directory behind; the next process to use this package removes
// what it lists. Only directories whose owner is gone are swept, so parallel
// test processes do not disturb each other.
const registryRoot = "/run/pct-nstest"

// Kinds of tracked resources, in the order a sweep removes them.
const (
	kindPid   = "pid"
	kindMount = "mount"
	kindNetns = "netns"
	kindDir   = "dir"
)

// resource is one thing this process made that must not outlive it.
type resource struct {
	id       int
	kind     string
	file     string
	teardown func()
	once     sync.Once
}

var registry struct {
	mu    sync.Mutex
	dir   string
	next  int
	items map[int]*resource
	err   error
	init  sync.Once
}

// track records a resource and its teardown. The teardown runs once: on
// release, or from the signal handler.
func track(kind, value string, teardown func()) (*resource, error) {
	registry.init.Do(initRegistry)
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.err != nil {
		return nil, registry.err
	}
	registry.next++
	r := &resource{id: registry.next, kind: kind, teardown: teardown}
	r.file = filepath.Join(registry.dir, fmt.Sprintf("%s-%d", kind, r.id))
	if err := os.WriteFile(r.file, []byte(value), 0o600); err != nil {
		return nil, fmt.Errorf("record %s %s: %w", kind, value, err)
	}
	registry.items[r.id] = r
	return r, nil
}

// release runs the teardown (once) and forgets the resource.
func (r *resource) release() {
	r.once.Do(func() {
		if r.teardown != nil {
			r.teardown()
		}
		registry.mu.Lock()
		delete(registry.items, r.id)
		registry.mu.Unlock()
		os.Remove(r.file)
	})
}

// forget drops the record without running the teardown: the resource is
// already gone (an agent that exited and was waited for).
func (r *resource) forget() {
	r.once.Do(func() {
		registry.mu.Lock()
		delete(registry.items, r.id)
		registry.mu.Unlock()
		os.Remove(r.file)
	})
}

func initRegistry() {
	registry.items = map[int]*resource{}
	if err := os.MkdirAll(registryRoot, 0o700); err != nil {
		registry.err = fmt.Errorf("nstest registry: %w", err)
		return
	}
	sweepDead()
	start, err := procStart(os.Getpid())
	if err != nil {
		registry.err = fmt.Errorf("nstest registry: %w", err)
		return
	}
	registry.dir = filepath.Join(registryRoot, fmt.Sprintf("%d-%d", os.Getpid(), start))
	if err := os.MkdirAll(registry.dir, 0o700); err != nil {
		registry.err = fmt.Errorf("nstest registry: %w", err)
		return
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigc
		fmt.Fprintf(os.Stderr, "nstest: %v: removing namespaces, mounts and agents\n", sig)
		ReleaseAll()
		os.Exit(130)
	}()
}

// ReleaseAll tears down every resource this process still holds, newest
// first. TestMain may call it after m.Run as a last safety net.
func ReleaseAll() {
	registry.mu.Lock()
	items := make([]*resource, 0, len(registry.items))
	for _, r := range registry.items {
		items = append(items, r)
	}
	dir := registry.dir
	registry.mu.Unlock()
	slices.SortFunc(items, func(a, b *resource) int { return b.id - a.id })
	for _, r := range items {
		r.release()
	}
	if dir != "" {
		os.Remove(dir)
	}
}

// sweepDead removes what processes that died without cleaning up left.
func sweepDead() {
	ents, err := os.ReadDir(registryRoot)
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, start, ok := parseOwner(e.Name())
		if !ok || alive(pid, start) {
			continue
		}
		sweepDir(filepath.Join(registryRoot, e.Name()))
	}
}

func sweepDir(dir string) {
	files, _ := os.ReadDir(dir)
	byKind := map[string][]string{}
	for _, f := range files {
		kind, _, _ := strings.Cut(f.Name(), "-")
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err == nil {
			byKind[kind] = append(byKind[kind], string(b))
		}
	}
	for _, v := range byKind[kindPid] {
		if pid, start, ok := parseOwner(v); ok && alive(pid, start) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, m := range byKind[kindMount] {
		unix.Unmount(m, unix.MNT_DETACH)
		os.Remove(m)
	}
	for _, ns := range byKind[kindNetns] {
		exec.Command("ip", "netns", "delete", ns).Run()
	}
	for _, d := range byKind[kindDir] {
		os.RemoveAll(d)
	}
	os.RemoveAll(dir)
}

// parseOwner parses "<pid>-<start time>".
func parseOwner(s string) (int, uint64, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(a)
	start, err2 := strconv.ParseUint(b, 10, 64)
	return pid, start, err1 == nil && err2 == nil
}

// alive reports whether pid runs and is the process that started at start
// (pids are reused).
func alive(pid int, start uint64) bool {
	s, err := procStart(pid)
	return err == nil && s == start
}

// procStart returns a process's start time in clock ticks since boot
// (field 22 of /proc/PID/stat).
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// ownerTag is the "<pid>-<start time>" record of a child process.
func ownerTag(pid int) string {
	start, err := procStart(pid)
	if err != nil {
		return strconv.Itoa(pid) + "-0"
	}
	return fmt.Sprintf("%d-%d", pid, start)
}
