package nstest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Image is the name of the busybox image ImportImage makes.
const Image = "pct-busybox:1"

// Dockerd is a real Docker engine (Debian's docker.io) running in a node
// namespace with its data, exec root and socket in a directory of its own:
//
//	nsenter --net=/run/netns/NODE dockerd --data-root DIR/data --exec-root DIR/exec
//	    -H unix://DIR/docker.sock --pidfile DIR/docker.pid --iptables=false
//	    --ip6tables=false --userland-proxy=false --storage-driver vfs
//
// nsenter rather than `ip netns exec`, which remounts /sys and hides the
// cgroup mount that dockerd needs.
type Dockerd struct {
	Dir    string
	Socket string
	Host   string // unix://Socket, for portcullisd --docker
	Args   []string

	tb    TB
	node  *NS
	cli   string
	cmd   *exec.Cmd
	exitc chan error
	res   *resource
	dir   *resource
}

// RequireDocker skips the test when the engine or busybox is missing.
func RequireDocker(tb TB) {
	tb.Helper()
	RequireRoot(tb)
	for _, bin := range []string{"dockerd", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("nstest: needs %s (Debian's docker.io; `make test` installs it): %v", bin, err)
		}
	}
	if _, err := dockerCLI(); err != nil {
		tb.Skipf("nstest: %v", err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		tb.Skipf("nstest: needs /bin/busybox (Debian's busybox-static) for the container image: %v", err)
	}
}

// dockerCLI prefers the client that comes with the engine.
func dockerCLI() (string, error) {
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker", nil
	}
	p, err := exec.LookPath("docker")
	if err != nil {
		return "", fmt.Errorf("needs the docker client: %w", err)
	}
	return p, nil
}

// StartDockerd runs an engine in node (extra dockerd flags in args) and
// stops it, with every container, at cleanup.
func StartDockerd(tb TB, node *NS, args ...string) *Dockerd {
	tb.Helper()
	RequireDocker(tb)
	cli, _ := dockerCLI()
	dir, err := os.MkdirTemp("", "pct-docker-")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	d := &Dockerd{Dir: dir, Socket: filepath.Join(dir, "docker.sock"), Args: args, tb: tb, node: node, cli: cli}
	d.Host = "unix://" + d.Socket
	d.dir, err = track(kindDir, dir, func() { unmountUnder(dir); os.RemoveAll(dir) })
	if err != nil {
		os.RemoveAll(dir)
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(d.cleanup)
	if err := d.Start(); err != nil {
		tb.Fatalf("%v", err)
	}
	return d
}

// Start starts the engine (again, after Stop) and waits until it answers.
func (d *Dockerd) Start() error {
	if d.cmd != nil {
		return errors.New("dockerd already running")
	}
	logf, err := os.OpenFile(d.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"--net=" + d.node.Path, "dockerd",
		"--data-root", filepath.Join(d.Dir, "data"), "--exec-root", filepath.Join(d.Dir, "exec"),
		"-H", d.Host, "--pidfile", filepath.Join(d.Dir, "docker.pid"),
		"--iptables=false", "--ip6tables=false", "--userland-proxy=false", "--storage-driver", "vfs"}
	cmd := exec.Command("nsenter", append(args, d.Args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	d.res, _ = track(kindPid, ownerTag(cmd.Process.Pid), func() { cmd.Process.Kill() })
	d.cmd = cmd
	d.exitc = make(chan error, 1)
	go func() { d.exitc <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-d.exitc:
			d.exitc <- err
			return fmt.Errorf("dockerd exited before it answered (%v); log:\n%s", err, tail(d.LogPath(), 30))
		default:
		}
		if _, err := d.Docker("version", "--format", "{{.Server.Version}}"); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd did not answer within a minute; log:\n%s", tail(d.LogPath(), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop ends the engine with SIGTERM (30 s, then SIGKILL). Containers keep
// running only with live-restore; without it dockerd stops them.
func (d *Dockerd) Stop() error {
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-d.exitc:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exitc
		err = errors.New("dockerd ignored SIGTERM for 30 s: killed")
	}
	if d.res != nil {
		d.res.forget()
	}
	d.cmd, d.res = nil, nil
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil // ended by our signal
	}
	return err
}

// LogPath is dockerd's log.
func (d *Dockerd) LogPath() string { return filepath.Join(d.Dir, "dockerd.log") }

// Docker runs the docker client against this engine.
func (d *Dockerd) Docker(args ...string) (string, error) {
	cmd := exec.Command(d.cli, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+d.Host, "DOCKER_CLI_HINTS=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// MustDocker runs the docker client and fails the test on error.
func (d *Dockerd) MustDocker(tb TB, args ...string) string {
	tb.Helper()
	out, err := d.Docker(args...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return out
}

// ImportImage makes Image from Debian's static busybox (no registry is
// needed): httpd, nc, sleep and a shell.
func (d *Dockerd) ImportImage(tb TB) {
	tb.Helper()
	root := filepath.Join(d.Dir, "rootfs")
	if err := BusyboxRootfs(root); err != nil {
		tb.Fatalf("%v", err)
	}
	cmd := exec.Command("sh", "-c", fmt.Sprintf("tar -C %s -c . | %s import -c 'CMD [\"/bin/sh\"]' - %s", root, d.cli, Image))
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+d.Host)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("docker import: %v: %s", err, out)
	}
}

// ContainerNS returns a handle on a running container's network namespace
// (its sandbox), for the harness's clients, servers and captures.
func (d *Dockerd) ContainerNS(tb TB, name string) *NS {
	tb.Helper()
	pid := d.MustDocker(tb, "inspect", "-f", "{{.State.Pid}}", name)
	if pid == "0" || pid == "" {
		tb.Fatalf("container %s is not running", name)
	}
	return &NS{Name: "docker:" + name, Path: "/proc/" + pid + "/ns/net"}
}

// cleanup removes every container, stops the engine and unmounts what it
// mounted (it bind-mounts its data root onto itself).
func (d *Dockerd) cleanup() {
	if d.cmd != nil {
		if ids, err := d.Docker("ps", "-aq"); err == nil && ids != "" {
			d.Docker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
		}
	}
	if err := d.Stop(); err != nil {
		d.tb.Errorf("stop dockerd: %v", err)
	}
	if d.tb.Failed() {
		d.tb.Logf("dockerd log (last lines):\n%s", tail(d.LogPath(), 40))
	}
	d.dir.release()
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			mounts = append(mounts, fields[4])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		unix.Unmount(m, unix.MNT_DETACH)
	}
}

// BusyboxRootfs writes at root the file system of Image: Debian's static
// busybox (/bin/busybox) with httpd, nc, sleep and a shell, and a page for
// httpd in /www.
func BusyboxRootfs(root string) error {
	for _, sub := range []string{"bin", "etc", "tmp", "www"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			return err
		}
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(root, "bin/busybox")).CombinedOutput(); err != nil {
		return fmt.Errorf("copy busybox: %w: %s", err, out)
	}
	for _, app := range []string{"sh", "httpd", "nc", "sleep", "cat", "echo", "ping", "ip", "hostname", "env", "timeout"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(root, "www/index.html"), []byte("busybox httpd\n"), 0o644)
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
