package nstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// NetnsDir is where iproute2 keeps named namespaces.
const NetnsDir = "/run/netns"

// Prefix starts the name of every namespace this package makes.
const Prefix = "pct-"

// cmdTimeout bounds every command the harness runs (ip, nft, tc, sysctl).
const cmdTimeout = 30 * time.Second

// NS is a named network namespace, /run/netns/<Name>.
type NS struct {
	Name string
	Path string
	res  *resource
}

// RandomSuffix returns 6 random hex digits for unique names.
func RandomSuffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// RequireRoot skips the test unless the process may create namespaces.
func RequireRoot(tb TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skipf("nstest: needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skipf("nstest: needs iproute2's ip: %v", err)
	}
}

// NewNS creates the namespace pct-<role>-<suffix> and removes it at cleanup.
func NewNS(tb TB, role, suffix string) *NS {
	tb.Helper()
	ns, err := CreateNS(Prefix + role + "-" + suffix)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(ns.Delete)
	return ns
}

// CreateNS creates a named namespace with lo up. The caller must Delete it;
// until then it is recorded so that a signal or a later run removes it.
func CreateNS(name string) (*NS, error) {
	if !strings.HasPrefix(name, Prefix) {
		return nil, fmt.Errorf("namespace %q: names must start with %q", name, Prefix)
	}
	ns := &NS{Name: name, Path: filepath.Join(NetnsDir, name)}
	res, err := track(kindNetns, name, func() { deleteNetns(name) })
	if err != nil {
		return nil, err
	}
	ns.res = res
	if out, err := run("ip", "netns", "add", name); err != nil {
		res.release()
		return nil, fmt.Errorf("create namespace %s: %w: %s", name, err, out)
	}
	if _, err := ns.IP("link", "set", "lo", "up"); err != nil {
		ns.Delete()
		return nil, err
	}
	return ns, nil
}

// Delete removes the namespace. Interfaces in it go with it; a process still
// running inside keeps the namespace alive, so stop those first.
func (n *NS) Delete() {
	if n.res != nil {
		n.res.release()
	}
}

func deleteNetns(name string) {
	if out, err := run("ip", "netns", "delete", name); err != nil {
		if _, serr := os.Stat(filepath.Join(NetnsDir, name)); serr == nil {
			fmt.Fprintf(os.Stderr, "nstest: delete namespace %s: %v: %s\n", name, err, out)
		}
	}
}

// String returns the namespace name.
func (n *NS) String() string { return n.Name }

// Do runs fn on an OS thread that has entered the namespace, then restores
// the thread. Sockets created inside fn stay in the namespace and may be
// used from any goroutine afterwards. fn must not call t.FailNow (it runs on
// its own goroutine); return an error instead.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		sent := false
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("panic in namespace %s: %v\n%s", n.Name, r, debug.Stack())
			} else if !sent {
				errc <- fmt.Errorf("function in namespace %s exited early (runtime.Goexit, t.FailNow?)", n.Name)
			}
		}()
		err := n.doLocked(fn)
		sent = true
		errc <- err
	}()
	return <-errc
}

// doLocked switches the locked thread in and out. When the thread cannot be
// switched back it stays locked, so the runtime ends it with the goroutine
// instead of reusing a thread that sits in the wrong namespace.
func (n *NS) doLocked(fn func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current namespace: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open(n.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open namespace %s: %w", n.Name, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace %s: %w", n.Name, err)
	}
	restored := false
	defer func() {
		if restored {
			runtime.UnlockOSThread()
		}
	}()
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", n.Name, err))
	}
	restored = true
	return ferr
}

// Exec runs a command inside the namespace (ip netns exec) and returns its
// combined output.
func (n *NS) Exec(args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// IP runs ip -n <ns> args.
func (n *NS) IP(args ...string) (string, error) {
	return run("ip", append([]string{"-n", n.Name}, args...)...)
}

// MustIP runs ip -n <ns> args and fails the test on error.
func (n *NS) MustIP(tb TB, args ...string) string {
	tb.Helper()
	out, err := n.IP(args...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return out
}

// MustExec runs a command in the namespace and fails the test on error.
func (n *NS) MustExec(tb TB, args ...string) string {
	tb.Helper()
	out, err := n.Exec(args...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return out
}

// SetSysctl writes a sysctl of this namespace, e.g.
// SetSysctl("net.ipv4.ip_forward", "1").
func (n *NS) SetSysctl(key, value string) error {
	return n.Do(func() error {
		// /proc/sys/net resolves against the opening thread's namespace.
		if err := os.WriteFile(sysctlPath(key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}

// Sysctl reads a sysctl of this namespace.
func (n *NS) Sysctl(key string) (string, error) {
	var v string
	err := n.Do(func() error {
		b, err := os.ReadFile(sysctlPath(key))
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// Interface returns a network interface of the namespace.
func (n *NS) Interface(name string) (*net.Interface, error) {
	var ifi *net.Interface
	err := n.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("interface %s in %s: %w", name, n.Name, err)
	}
	return ifi, nil
}

// Addrs returns the addresses of an interface of the namespace.
func (n *NS) Addrs(ifname string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		as, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, a := range as {
			if ipn, ok := a.(*net.IPNet); ok {
				addr, _ := netip.AddrFromSlice(ipn.IP)
				ones, _ := ipn.Mask.Size()
				out = append(out, netip.PrefixFrom(addr.Unmap(), ones))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("addresses of %s in %s: %w", ifname, n.Name, err)
	}
	return out, nil
}

// LinkLocal returns the fe80::/10 address of an interface, zoned with the
// interface name (usable in dial strings inside this namespace).
func (n *NS) LinkLocal(ifname string) (netip.Addr, error) {
	as, err := n.Addrs(ifname)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, p := range as {
		if p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			return p.Addr().WithZone(ifname), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no link-local address on %s in %s", ifname, n.Name)
}

// WaitInterface waits until ifname exists, is up with carrier (operstate up
// reaches the stack through linkwatch, up to a second late), holds no
// tentative IPv6 address (IPv6 ignores a link until then, nodad or not),
// and carries want (when valid). The agent plugs containers
// asynchronously from the test's view, so cases wait on this too.
func (n *NS) WaitInterface(ifname string, want netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		last = n.checkInterface(ifname, want)
		if last == nil || time.Now().After(deadline) {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *NS) checkInterface(ifname string, want netip.Addr) error {
	ifi, err := n.Interface(ifname)
	if err != nil {
		return err
	}
	if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagRunning == 0 {
		return fmt.Errorf("%s in %s is not up and running (%v)", ifname, n.Name, ifi.Flags)
	}
	out, err := n.IP("-6", "addr", "show", "dev", ifname, "tentative")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "" {
		return fmt.Errorf("%s in %s has tentative IPv6 addresses:\n%s", ifname, n.Name, out)
	}
	if !want.IsValid() {
		return nil
	}
	as, err := n.Addrs(ifname)
	if err != nil {
		return err
	}
	for _, p := range as {
		if p.Addr() == want.WithZone("") {
			return nil
		}
	}
	return fmt.Errorf("%s in %s has %v, not %v", ifname, n.Name, as, want)
}

// run runs a command with the harness timeout and returns combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
