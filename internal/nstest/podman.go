package nstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Podman is a real Podman (Debian's podman 4.3, CNI network backend) that
// runs its containers in a node namespace, with everything it keeps in a
// directory of its own:
//
//	DIR/containers.conf  network_backend "cni", network_config_dir DIR/cni,
//	                     cni_plugin_dirs (PluginDirs, then /usr/lib/cni),
//	                     cgroup manager cgroupfs, runtime runc,
//	                     default_ulimits [], events to a file, tmp_dir DIR/tmp
//	DIR/storage.conf     driver vfs, graphroot DIR/graph, runroot DIR/run
//	DIR/cni              the CNI configuration directory (WriteConflist)
//	DIR/ipam             a data directory for host-local (IPAMDir)
//
// Every command runs as `nsenter --net=NODE podman --runtime runc ...`
// (under `ip netns exec`, which remounts /sys, runc finds no cgroup mount;
// crun refuses hybrid cgroups). Podman is daemonless: its namespaces,
// bridges and conmon processes are made in the node namespace, and the
// CNI plugins run there too. Containers go in the cgroup parent
// /pct-podman-SUFFIX, removed at cleanup with the containers, the storage
// and the CNI result cache entries of the networks written with
// WriteConflist.
type Podman struct {
	Dir     string
	ConfDir string
	// CgroupParent is the cgroupfs parent of every container Run makes.
	CgroupParent string

	tb       TB
	node     *NS
	env      []string
	networks []string // names of the conflists written, for the cache sweep
	dir      *resource
	// procs are what the containers Run made hold (trackProcesses), and
	// cgroups the cgroup parent in each hierarchy: a test process killed
	// before its cleanup has them removed by the next one.
	procs, cgroups []*resource
}

// PodmanOptions configure StartPodman.
type PodmanOptions struct {
	// PluginDirs are searched for CNI plugins before /usr/lib/cni (put the
	// directory of the plugin under test here).
	PluginDirs []string
}

// cniResultCache is where libcni, inside Podman, caches ADD results.
const cniResultCache = "/var/lib/cni/results"

// RequirePodman skips the test when Podman, runc, nsenter, the CNI
// plugins or busybox are missing.
func RequirePodman(tb TB) {
	tb.Helper()
	RequireRoot(tb)
	for _, bin := range []string{"podman", "runc", "nsenter", "conmon"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, serr := os.Stat("/usr/bin/" + bin); serr != nil {
				tb.Skipf("nstest: needs %s (Debian's podman with runc; `make deps-podman` installs it): %v", bin, err)
			}
		}
	}
	if _, err := os.Stat("/usr/lib/cni/host-local"); err != nil {
		tb.Skipf("nstest: needs the CNI plugins in /usr/lib/cni (Debian's containernetworking-plugins, a dependency of podman): %v", err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		tb.Skipf("nstest: needs /bin/busybox (Debian's busybox-static) for the container image: %v", err)
	}
}

// StartPodman prepares a Podman for node and imports Image into its
// storage. Nothing runs until a command does.
func StartPodman(tb TB, node *NS, opts PodmanOptions) *Podman {
	tb.Helper()
	RequirePodman(tb)
	dir, err := os.MkdirTemp("", "pct-podman-")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	p := &Podman{Dir: dir, ConfDir: filepath.Join(dir, "cni"), tb: tb, node: node,
		CgroupParent: "/pct-podman-" + filepath.Base(dir)[len("pct-podman-"):]}
	p.dir, err = track(kindDir, dir, func() { unmountUnder(dir); os.RemoveAll(dir) })
	if err != nil {
		os.RemoveAll(dir)
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(p.cleanup)
	for _, root := range cgroupRoots(p.CgroupParent) {
		if r, err := track(kindDir, root, nil); err == nil {
			p.cgroups = append(p.cgroups, r)
		}
	}
	if err := p.writeConfig(opts); err != nil {
		tb.Fatalf("podman configuration: %v", err)
	}
	p.ImportImage(tb)
	return p
}

func (p *Podman) writeConfig(opts PodmanOptions) error {
	for _, sub := range []string{"cni", "ipam", "tmp", "graph", "run"} {
		if err := os.MkdirAll(filepath.Join(p.Dir, sub), 0o700); err != nil {
			return err
		}
	}
	dirs, _ := json.Marshal(append(append([]string{}, opts.PluginDirs...), "/usr/lib/cni"))
	conf := fmt.Sprintf(`[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
events_logfile_path = %q
tmp_dir = %q
[network]
network_backend = "cni"
network_config_dir = %q
cni_plugin_dirs = %s
`, filepath.Join(p.Dir, "events.log"), filepath.Join(p.Dir, "tmp"), p.ConfDir, dirs)
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(p.Dir, "graph"), filepath.Join(p.Dir, "run"))
	cc, sc := filepath.Join(p.Dir, "containers.conf"), filepath.Join(p.Dir, "storage.conf")
	if err := os.WriteFile(cc, []byte(conf), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(sc, []byte(storage), 0o600); err != nil {
		return err
	}
	p.env = append(os.Environ(), "CONTAINERS_CONF="+cc, "CONTAINERS_STORAGE_CONF="+sc)
	return nil
}

// IPAMDir is a host-local data directory under the Podman's directory, for
// conflists ("dataDir"), so no allocation is left in /var/lib/cni.
func (p *Podman) IPAMDir() string { return filepath.Join(p.Dir, "ipam") }

// WriteConflist writes DIR/cni/NAME.conflist from conf (a JSON value whose
// "name" should be NAME). The CNI result cache entries of NAME are
// removed at cleanup.
func (p *Podman) WriteConflist(tb TB, name string, conf any) string {
	tb.Helper()
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	path := filepath.Join(p.ConfDir, name+".conflist")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatalf("%v", err)
	}
	p.TrackNetwork(name)
	return path
}

// TrackNetwork records a network made another way (podman network
// create, a tool writing into ConfDir) for the cleanup's cache sweep.
func (p *Podman) TrackNetwork(name string) {
	for _, n := range p.networks {
		if n == name {
			return
		}
	}
	p.networks = append(p.networks, name)
}

// Command returns the podman command for args, in the node namespace and
// with this Podman's configuration.
func (p *Podman) Command(args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=" + p.node.Path, "podman", "--runtime", "runc"}, args...)...)
	cmd.Env = p.env
	return cmd
}

// Podman runs podman with args (two minutes at most) and returns its
// standard output, trimmed; the error carries standard error.
func (p *Podman) Podman(args ...string) (string, error) {
	cmd := p.Command(args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("podman %s: %w", strings.Join(args, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		err = errors.Join(errors.New("killed after 2 minutes"), <-done)
	}
	out := strings.TrimSpace(stdout.String())
	if err != nil {
		return out, fmt.Errorf("podman %s: %w: %s %s", strings.Join(args, " "), err, out, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// MustPodman runs podman and fails the test on error.
func (p *Podman) MustPodman(tb TB, args ...string) string {
	tb.Helper()
	out, err := p.Podman(args...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return out
}

// Run starts a container in the background: `podman run -d
// --cgroup-parent P ARGS...` (args are run's flags, then the image and
// command) and returns its id.
func (p *Podman) Run(args ...string) (string, error) {
	id, err := p.Podman(append([]string{"run", "-d", "--cgroup-parent", p.CgroupParent}, args...)...)
	if err == nil {
		p.trackProcesses(id)
	}
	return id, err
}

// trackProcesses records what a container holds outside the Podman's
// directory, or that keeps it from being removed (see procs): its conmon
// and first process, its /dev/shm mount, its namespace in /run/netns and
// its CNI result cache entries.
func (p *Podman) trackProcesses(id string) {
	out, err := p.Podman("inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}} {{.NetworkSettings.SandboxKey}}", id)
	f := strings.Fields(out)
	if err != nil || len(f) < 2 {
		return
	}
	add := func(kind, value string) {
		if r, err := track(kind, value, nil); err == nil {
			p.procs = append(p.procs, r)
		}
	}
	for _, s := range f[:2] {
		if pid, err := strconv.Atoi(s); err == nil && pid > 0 {
			add(kindPid, ownerTag(pid))
		}
	}
	add(kindMount, filepath.Join(p.Dir, "graph", "vfs-containers", id, "userdata", "shm"))
	if len(f) > 2 && strings.HasPrefix(f[2], NetnsDir+"/") {
		add(kindNetns, filepath.Base(f[2]))
	}
	for _, n := range p.networks {
		cached, _ := filepath.Glob(filepath.Join(cniResultCache, n+"-"+id+"-*"))
		for _, c := range cached {
			add(kindDir, c)
		}
	}
}

// MustRun is Run failing the test on error.
func (p *Podman) MustRun(tb TB, args ...string) string {
	tb.Helper()
	id, err := p.Run(args...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return id
}

// PID returns the process id of a running container's first process.
func (p *Podman) PID(tb TB, name string) int {
	tb.Helper()
	s := p.MustPodman(tb, "inspect", "--format", "{{.State.Pid}}", name)
	pid, err := strconv.Atoi(s)
	if err != nil || pid == 0 {
		tb.Fatalf("container %s is not running (pid %q)", name, s)
	}
	return pid
}

// ContainerNS returns a handle on a running container's network namespace,
// for the harness's clients, servers and captures.
func (p *Podman) ContainerNS(tb TB, name string) *NS {
	tb.Helper()
	return &NS{Name: "podman:" + name, Path: fmt.Sprintf("/proc/%d/ns/net", p.PID(tb, name))}
}

// NetnsPath returns the namespace path Podman gave the CNI plugins
// (CNI_NETNS) for a running container.
func (p *Podman) NetnsPath(tb TB, name string) string {
	tb.Helper()
	return p.MustPodman(tb, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name)
}

// Remove removes a container, stopping it at once if it runs.
func (p *Podman) Remove(tb TB, name string) {
	tb.Helper()
	p.MustPodman(tb, "rm", "-f", "-t", "0", name)
}

// ImportImage makes Image from Debian's static busybox (no registry).
func (p *Podman) ImportImage(tb TB) {
	tb.Helper()
	root := filepath.Join(p.Dir, "rootfs")
	if err := BusyboxRootfs(root); err != nil {
		tb.Fatalf("%v", err)
	}
	tar := exec.Command("tar", "-C", root, "-c", ".")
	imp := p.Command("import", "-c", `CMD ["/bin/sh"]`, "-", Image)
	pipe, err := tar.StdoutPipe()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	imp.Stdin = pipe
	if err := tar.Start(); err != nil {
		tb.Fatalf("tar %s: %v", root, err)
	}
	out, err := imp.CombinedOutput()
	tar.Wait()
	if err != nil {
		tb.Fatalf("podman import: %v: %s", err, out)
	}
}

// cleanup removes every container (their CNI DEL runs now, while the
// test's agent is still up), the storage, the cgroups and the CNI cache
// entries of the networks this Podman used.
func (p *Podman) cleanup() {
	if out, err := p.Podman("rm", "-a", "-f", "-t", "0"); err != nil {
		p.tb.Logf("podman rm -a at cleanup: %v: %s", err, out)
	}
	for _, r := range p.procs {
		r.forget()
	}
	removeCgroups(p.CgroupParent)
	for _, r := range p.cgroups {
		r.forget()
	}
	for _, n := range p.networks {
		left, _ := filepath.Glob(filepath.Join(cniResultCache, n+"-*"))
		for _, f := range left {
			os.Remove(f)
		}
	}
	if p.tb.Failed() {
		p.tb.Logf("podman events (last lines):\n%s", tail(filepath.Join(p.Dir, "events.log"), 20))
	}
	p.dir.release()
}

// removeCgroups removes the cgroup parent (and anything below it) in every
// hierarchy, deepest first. Processes still in it keep a cgroup; it is
// left then, and said so.
func removeCgroups(parent string) {
	for _, root := range cgroupRoots(parent) {
		var dirs []string
		filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(os.Stderr, "nstest: remove cgroup %s: %v\n", dirs[i], err)
			}
		}
	}
}

// cgroupRoots are where parent is in every cgroup hierarchy (v1
// controllers, the v2 or hybrid unified tree), existing yet or not.
func cgroupRoots(parent string) []string {
	roots := []string{"/sys/fs/cgroup" + parent}
	hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hierarchies {
		if h.IsDir() {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", h.Name())+parent)
		}
	}
	return roots
}
