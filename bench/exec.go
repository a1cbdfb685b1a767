package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// cmdTimeout bounds a command unless the caller gives a longer bound (bulk
// programming of 100,000 mappings takes a while with some tools).
const cmdTimeout = 60 * time.Second

// command is one program run inside a namespace. It is forked from a
// thread that has entered the namespace, so it starts there without `ip
// netns exec` and its cost (a new mount namespace, a remount of /sys):
// the reference modes' iptables and nft calls then cost what they cost
// Docker.
type command struct {
	ns      *nstest.NS
	args    []string
	stdin   string
	env     []string // added to the environment
	timeout time.Duration
}

// run runs c and returns its combined output. The child gets SIGKILL if
// pcbench dies (Pdeathsig), so an interrupted run leaves no tool behind.
func (c command) run() (string, error) {
	to := c.timeout
	if to <= 0 {
		to = cmdTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), to)
	defer cancel()
	cmd := c.cmd(ctx)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if c.stdin != "" {
		cmd.Stdin = strings.NewReader(c.stdin)
	}
	err := c.start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %v", ctx.Err(), to)
		}
		return out.String(), fmt.Errorf("%s: %w: %s", c, err, trimOutput(out.String()))
	}
	return out.String(), nil
}

func (c command) cmd(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.args[0], c.args[1:]...)
	cmd.WaitDelay = 5 * time.Second
	if len(c.env) > 0 {
		cmd.Env = append(os.Environ(), c.env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// start forks from a locked thread (Pdeathsig follows the thread that
// forked), inside c.ns when there is one: a child inherits the network
// namespace of the thread that created it.
func (c command) start(cmd *exec.Cmd) error {
	if c.ns == nil {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return cmd.Start()
	}
	return c.ns.Do(cmd.Start)
}

func (c command) String() string {
	s := strings.Join(c.args, " ")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	if c.ns != nil {
		return "in " + c.ns.Name + ": " + s
	}
	return s
}

func trimOutput(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = s[:300] + " ... " + s[len(s)-300:]
	}
	return s
}

// background is a long-running tool (an iperf3 server) inside a namespace.
type background struct {
	cmd   *exec.Cmd
	out   bytes.Buffer
	exitc chan error
}

// startBackground starts args in ns and stops it at tb's cleanup.
func startBackground(tb *scope, ns *nstest.NS, args ...string) *background {
	b := &background{exitc: make(chan error, 1)}
	c := command{ns: ns, args: args}
	b.cmd = c.cmd(context.Background())
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := c.start(b.cmd); err != nil {
		tb.Fatalf("start %s in %s: %v", strings.Join(args, " "), ns.Name, err)
	}
	go func() { b.exitc <- b.cmd.Wait() }()
	tb.Cleanup(b.stop)
	return b
}

func (b *background) stop() {
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exitc:
	case <-time.After(3 * time.Second):
		b.cmd.Process.Kill()
		<-b.exitc
	}
}

// tempPrefix names the temporary directories of this process, so that a
// later run can remove those of a pcbench that was killed.
func tempPrefix() string { return fmt.Sprintf("pcbench-%d-", os.Getpid()) }

// sweepTemp removes the temporary directories of pcbench processes that
// no longer run. Namespaces, mounts and agents are nstest's to sweep.
func sweepTemp() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pcbench-*-*"))
	for _, d := range dirs {
		f := strings.SplitN(filepath.Base(d), "-", 3)
		pid, err := strconv.Atoi(f[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			os.RemoveAll(d)
		}
	}
}

// nextToSelf finds an executable in the directory of the running binary
// (bin/ for make bench).
func nextToSelf(name string) (string, bool) {
	self, err := os.Executable()
	if err != nil {
		return "", false
	}
	p := filepath.Join(filepath.Dir(self), name)
	fi, err := os.Stat(p)
	return p, err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// lookTool finds a tool next to the pcbench binary, then on PATH, then in
// the Go bin directory (where `go install` puts cnitool).
func lookTool(name string) (string, error) {
	if p, ok := nextToSelf(name); ok {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("HOME"), "go", "bin"), "/root/go/bin"} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found next to pcbench, on PATH or in the Go bin directory", name)
}
