package netdev

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// TestBridgeKeepsItsMAC: a bridge the agent creates has the MAC derived
// from its gateway and keeps it when a veth with a lower MAC joins; a
// bridge made without one (the control) takes the veth's.
func TestBridgeKeepsItsMAC(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "bridge", nstest.RandomSuffix())
	low := "02:00:00:00:00:01"
	ns.MustIP(t, "link", "add", "other0", "type", "bridge")
	for _, args := range [][]string{
		{"link", "add", "v-ours", "address", low, "type", "veth", "peer", "name", "p-ours"},
		{"link", "add", "v-other", "address", low, "type", "veth", "peer", "name", "p-other"},
	} {
		ns.MustIP(t, args...)
	}
	n := &model.RNetwork{Name: "n", Bridge: "pcb0", Subnet: netip.MustParsePrefix("172.30.0.0/16"),
		Gateway: netip.MustParseAddr("172.30.0.1")}
	want := net.HardwareAddr{0x02, 0x42, 172, 30, 0, 1}
	err := ns.Do(func() error {
		m, err := New()
		if err != nil {
			return err
		}
		defer m.Close()
		if _, err := m.EnsureBridge(n); err != nil {
			return err
		}
		for _, p := range [][2]string{{"v-ours", "pcb0"}, {"v-other", "other0"}} {
			if err := netlink.LinkSetMaster(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p[0]}}, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: p[1]}}); err != nil {
				return err
			}
		}
		mac := func(name string) net.HardwareAddr {
			l, err := netlink.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			return l.Attrs().HardwareAddr
		}
		if got := mac("other0"); got.String() != low {
			t.Fatalf("control: a bridge without a set MAC has %v with a %s port, want the port's", got, low)
		}
		if got := mac("pcb0"); !bytes.Equal(got, want) {
			t.Errorf("agent's bridge has MAC %v after a veth joined, want %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
