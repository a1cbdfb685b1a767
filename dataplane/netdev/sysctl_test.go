package netdev

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/nstest"
)

// TestForwardingRestored: uninstall puts back the forwarding sysctls, and
// those that turning forwarding on changed as a side effect, as they were
// before the agent first touched them, though an agent restart (a second
// Manager on the same file) found them changed. In a namespace of its own.
func TestForwardingRestored(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "sysctl", nstest.RandomSuffix())
	ns.MustIP(t, "link", "add", "up9", "type", "veth", "peer", "name", "up9p")
	file := filepath.Join(t.TempDir(), SysctlFileName)
	keys := []string{
		"net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/default/forwarding",
		"net/ipv4/conf/all/accept_redirects", "net/ipv4/conf/lo/forwarding", "net/ipv4/conf/up9/forwarding",
		"net/ipv6/conf/all/forwarding", "net/ipv6/conf/default/forwarding", "net/ipv6/conf/up9/forwarding",
	}
	read := func() map[string]string {
		out := map[string]string{}
		for _, k := range keys {
			b, err := os.ReadFile("/proc/sys/" + k)
			if err != nil {
				t.Fatal(err)
			}
			out[k] = strings.TrimSpace(string(b))
		}
		return out
	}
	manager := func() *Manager {
		m, err := New()
		if err != nil {
			t.Fatal(err)
		}
		m.SysctlFile = file
		return m
	}
	err := ns.Do(func() error {
		before := read()
		m := manager()
		defer m.Close()
		if err := m.EnsureForwarding(false); err != nil {
			return err
		}
		on := read()
		for _, k := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/up9/forwarding", "net/ipv4/conf/all/accept_redirects"} {
			if on[k] == before[k] {
				t.Errorf("%s stayed %s after forwarding was turned on (the test proves nothing)", k, on[k])
			}
		}

		restarted := manager()
		defer restarted.Close()
		if err := restarted.EnsureForwarding(true); err != nil {
			return err
		}
		if v := read()["net/ipv6/conf/up9/forwarding"]; v != "1" {
			t.Errorf("IPv6 forwarding on up9 = %s after it was turned on, want 1", v)
		}
		if err := restarted.RestoreForwarding(); err != nil {
			return err
		}
		after := read()
		for _, k := range keys {
			if after[k] != before[k] {
				t.Errorf("%s = %s after restore, was %s before the agent", k, after[k], before[k])
			}
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("%s left after restore: %v", file, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
