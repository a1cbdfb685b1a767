package nstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// AgentOptions configure StartAgent.
type AgentOptions struct {
	// Backend is passed as --backend (ebpf, nftables, auto).
	Backend string
	// Binary is the portcullisd to run; empty means BuildAgent's.
	Binary string
	// Args are extra flags for both the agent and its uninstall.
	Args []string
	// ReadyTimeout bounds the wait for /v1/status (default 20 s).
	ReadyTimeout time.Duration
}

// Agent is portcullisd running in a node namespace with its own socket,
// state directory and bpffs instance.
type Agent struct {
	Binary   string
	Dir      string
	Socket   string
	StateDir string
	// BPFFSMount is a private bpffs mounted for this agent; BPFFS, the
	// --bpffs flag, is a directory in it.
	BPFFSMount string
	BPFFS      string
	LogPath    string

	tb    TB
	node  *NS
	opts  AgentOptions
	mu    sync.Mutex
	cmd   *exec.Cmd
	res   *resource
	exitc chan error
	mount *resource
	dir   *resource
	// shown is how much of the log an error message already carried, so
	// the cleanup prints only the rest.
	shown int
	// failedStart is set when Start reported the agent's exit.
	failedStart bool
}

// StartAgent runs portcullisd inside node:
//
//	ip netns exec NODE portcullisd --socket DIR/pc.sock --state-dir DIR/state
//	    --backend B --bpffs DIR/bpffs/portcullis [Args...]
//
// and waits until GET /v1/status answers. At cleanup it stops the agent,
// runs `portcullisd uninstall` with the same flags, and, when the test
// failed, prints the agent's log.
//
// DIR/bpffs is a bpffs instance mounted for this agent alone: `ip netns
// exec` mounts a fresh /sys, so /sys/fs/bpf is not a bpffs inside it, and a
// private instance also leaves nothing pinned once unmounted.
func StartAgent(tb TB, node *NS, opts AgentOptions) *Agent {
	tb.Helper()
	a, err := newAgent(tb, node, opts)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(a.cleanup)
	if err := a.Start(); err != nil {
		tb.Fatalf("%v", err)
	}
	return a
}

func newAgent(tb TB, node *NS, opts AgentOptions) (*Agent, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = BuildAgent(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "pct-agent-")
	if err != nil {
		return nil, err
	}
	dirRes, err := track(kindDir, dir, func() { os.RemoveAll(dir) })
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	a := &Agent{
		Binary:     bin,
		Dir:        dir,
		Socket:     filepath.Join(dir, "pc.sock"),
		StateDir:   filepath.Join(dir, "state"),
		BPFFSMount: filepath.Join(dir, "bpffs"),
		LogPath:    filepath.Join(dir, "agent.log"),
		tb:         tb,
		node:       node,
		opts:       opts,
		dir:        dirRes,
	}
	a.BPFFS = filepath.Join(a.BPFFSMount, "portcullis")
	if err := os.Mkdir(a.BPFFSMount, 0o700); err != nil {
		dirRes.release()
		return nil, err
	}
	mnt := a.BPFFSMount
	a.mount, err = track(kindMount, mnt, func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			fmt.Fprintf(os.Stderr, "nstest: unmount %s: %v\n", mnt, err)
		}
	})
	if err != nil {
		dirRes.release()
		return nil, err
	}
	if err := unix.Mount("bpf", mnt, "bpf", 0, "mode=0700"); err != nil {
		a.mount.release()
		dirRes.release()
		return nil, fmt.Errorf("mount bpffs at %s: %w", mnt, err)
	}
	return a, nil
}

// Flags returns the flags the agent and its uninstall run with.
func (a *Agent) Flags() []string {
	f := []string{"--socket", a.Socket, "--state-dir", a.StateDir, "--bpffs", a.BPFFS}
	if a.opts.Backend != "" {
		f = append(f, "--backend", a.opts.Backend)
	}
	return append(f, a.opts.Args...)
}

// SetArgs replaces the extra flags for the next Start (a restart with other
// flags, as an operator's edited configuration would do).
func (a *Agent) SetArgs(args ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.opts.Args = args
}

// Start starts the agent (again, after Stop) and waits until it answers.
func (a *Agent) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		return errors.New("agent already running")
	}
	a.failedStart = false
	logf, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== nstest: start %s %s\n", a.Binary, strings.Join(a.Flags(), " "))
	args := append([]string{"netns", "exec", a.node.Name, a.Binary}, a.Flags()...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// ip netns exec execs the agent in place, so the agent is our child and
	// gets SIGTERM if the test process dies. (Pdeathsig follows the thread
	// that forked; lock it so the runtime does not end that thread early.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	logf.Close()
	if err != nil {
		return fmt.Errorf("start portcullisd: %w", err)
	}
	pid := cmd.Process.Pid
	a.res, _ = track(kindPid, ownerTag(pid), func() { cmd.Process.Kill() })
	a.cmd = cmd
	exitc := make(chan error, 1)
	a.exitc = exitc
	go func() { exitc <- cmd.Wait() }()
	return a.waitReady(exitc)
}

func (a *Agent) waitReady(exitc chan error) error {
	to := a.opts.ReadyTimeout
	if to <= 0 {
		to = 20 * time.Second
	}
	deadline := time.Now().Add(to)
	for {
		select {
		case err := <-exitc:
			exitc <- err // keep it for Stop
			a.failedStart = true
			return fmt.Errorf("portcullisd exited before it answered (%v); log:\n%s", err, a.logsOnce())
		default:
		}
		st, _, err := a.Get("/v1/status")
		if err == nil && st == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("portcullisd did not answer /v1/status within %v (last: %d %v); log:\n%s", to, st, err, a.logsOnce())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits (10 s, then SIGKILL). The kernel state stays.
func (a *Agent) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return nil
	}
	err := killWait(a.cmd, a.exitc)
	if a.res != nil {
		a.res.forget()
	}
	a.cmd, a.res, a.exitc = nil, nil, nil
	return err
}

// killWait ends cmd politely, then not; exitc delivers cmd.Wait's result.
func killWait(cmd *exec.Cmd, exitc chan error) error {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exitc:
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
			return fmt.Errorf("portcullisd ended by %v", ee.Sys().(syscall.WaitStatus).Signal())
		}
		return err
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exitc
		return errors.New("portcullisd ignored SIGTERM for 10 s: killed")
	}
}

// Kill ends the agent with SIGKILL, as a crash would: nothing of its own
// shutdown runs. The kernel state stays; Start brings it back.
func (a *Agent) Kill() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return nil
	}
	a.cmd.Process.Kill()
	<-a.exitc
	if a.res != nil {
		a.res.forget()
	}
	a.cmd, a.res, a.exitc = nil, nil, nil
	return nil
}

// Restart stops and starts the agent with the same flags and directories.
func (a *Agent) Restart() error {
	if err := a.Stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return a.Start()
}

// Running reports whether the agent process is up.
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return false
	}
	select {
	case err := <-a.exitc:
		a.exitc <- err
		return false
	default:
		return true
	}
}

// Uninstall runs `portcullisd uninstall` with the agent's flags in the node
// namespace and returns its output.
func (a *Agent) Uninstall() (string, error) {
	args := append([]string{"netns", "exec", a.node.Name, a.Binary, "uninstall"}, a.Flags()...)
	out, err := run("ip", args...)
	if f, ferr := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); ferr == nil {
		fmt.Fprintf(f, "=== nstest: uninstall\n%s", out)
		f.Close()
	}
	return out, err
}

// Logs returns everything the agent (and its uninstalls) printed.
func (a *Agent) Logs() string {
	b, err := os.ReadFile(a.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// logsOnce returns the log not yet shown in a message and marks it shown.
func (a *Agent) logsOnce() string {
	l := a.Logs()
	if a.shown > len(l) {
		a.shown = 0
	}
	rest := l[a.shown:]
	a.shown = len(l)
	return rest
}

// Get sends GET path to the agent's socket and returns status and body.
func (a *Agent) Get(path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hc := http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", a.Socket)
		},
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://portcullis"+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Status returns GET /v1/status decoded.
func (a *Agent) Status() (map[string]any, error) {
	st, b, err := a.Get("/v1/status")
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/status: %d %s", st, b)
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func (a *Agent) cleanup() {
	if err := a.Stop(); err != nil && !a.failedStart {
		a.tb.Errorf("stop portcullisd at cleanup: %v", err)
	}
	if _, err := a.Uninstall(); err != nil {
		a.tb.Errorf("portcullisd uninstall at cleanup: %v", err)
	}
	if a.tb.Failed() {
		if rest := a.logsOnce(); strings.TrimSpace(rest) != "" {
			a.tb.Logf("portcullisd log (%s):\n%s", a.LogPath, rest)
		}
	}
	a.mount.release()
	a.dir.release()
}

var build struct {
	once sync.Once
	dir  string
	res  *resource
	path string
	err  error
}

// BuildAgent builds ./cmd/portcullisd once per process and returns the
// binary's path. $PORTCULLISD, when set, names a prebuilt binary instead.
func BuildAgent() (string, error) {
	build.once.Do(func() {
		if p := os.Getenv("PORTCULLISD"); p != "" {
			build.path, build.err = filepath.Abs(p)
			return
		}
		root, err := ModuleRoot()
		if err != nil {
			build.err = err
			return
		}
		if build.dir, err = os.MkdirTemp("", "pct-build-"); err != nil {
			build.err = err
			return
		}
		dir := build.dir
		if build.res, err = track(kindDir, dir, func() { os.RemoveAll(dir) }); err != nil {
			os.RemoveAll(dir)
			build.err = err
			return
		}
		build.path = filepath.Join(build.dir, "portcullisd")
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(gobin, "build", "-o", build.path, "./cmd/portcullisd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/portcullisd: %w\n%s", err, out)
		}
	})
	return build.path, build.err
}

// Main runs a package's tests, then removes what nstest made that outlives
// a test (what a failed cleanup left, and the agent BuildAgent built). Call
// it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	ReleaseAll()
	RemoveBuild()
	os.Exit(code)
}

// RemoveBuild deletes the binary BuildAgent built (call it from TestMain).
func RemoveBuild() {
	if build.res != nil {
		build.res.release()
	}
}

// ModuleRoot walks up from the working directory to the directory holding
// go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
