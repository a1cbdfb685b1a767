package nft

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// needRoot skips kernel tests for unprivileged runs, saying how to run them.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces: run `sudo go test ./dataplane/nft/`")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

// newNS creates a network namespace with a unique name (pcnft-ROLE-RANDOM)
// and deletes it when the test ends, whatever happened. Nothing is ever
// done in the root namespace: interfaces are created inside these.
func newNS(t *testing.T, role string) (string, netns.NsHandle) {
	t.Helper()
	name := fmt.Sprintf("pcnft-%s-%08x", role, rand.Uint32())
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name, h
}

// sh runs a command and fails the test when it fails.
func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNSExec runs a command inside namespace ns.
func inNSExec(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return sh(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// newBackend returns a full-mode backend for namespace h, uninstalled at
// cleanup.
func newBackend(t *testing.T, h netns.NsHandle) *Backend {
	t.Helper()
	return newBackendIn(t, h, ModeFull)
}

// newBackendIn returns a backend in mode m for namespace h, uninstalled at
// cleanup.
func newBackendIn(t *testing.T, h netns.NsHandle, m Mode) *Backend {
	t.Helper()
	b, err := New(Options{NetNS: h, Mode: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Uninstall(t.Context()); _ = b.Close() })
	return b
}
