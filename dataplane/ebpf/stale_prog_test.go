package ebpf

import (
	"net/netip"
	"testing"
)

// TestStaleDNATFlow is B13 in the datapath: once a published port is
// removed or moved, the packets of a flow it translated are no longer
// translated by their old pair, with no help from the agent (it only
// edits pc_ports here, as an API call does before answering). The pair is
// deleted by the first packet that meets it, from either side.
func TestStaleDNATFlow(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	p := f.port("web", f.a, ifA, 17, netip.Addr{}, 8080, 8080, 80)
	q := pkt4{src: ipExt, dst: ipNode, proto: 17, sport: 50000, dport: 8080, payload: []byte("q")}
	r := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 80, dport: 50000, payload: []byte("r")}
	fwdKey, revKey := ctKey(ipExt, 50000, ipNode, 8080, 17), ctKey(ipA, 80, ipExt, 50000, 17)

	want(t, f.pass(progUplinkIngress, q.frame()), ipExt, 50000, ipA, 80)
	// Control: while the mapping stands, the flow goes on both ways.
	want(t, f.pass(progEndpointIngress, r.frame()), ipNode, 8080, ipExt, 50000)
	want(t, f.pass(progUplinkIngress, q.frame()), ipExt, 50000, ipA, 80)

	t.Run("removed, client side", func(t *testing.T) {
		f.del(portEntries(p, ifA))
		f.passUnchanged(progUplinkIngress, q.frame()) // to the node's stack, as a new flow
		ct := f.ct()
		if _, ok := ct[fwdKey]; ok {
			t.Errorf("forward half still there")
		}
		if _, ok := ct[revKey]; ok {
			t.Errorf("reverse half still there")
		}
	})
	t.Run("removed, container side", func(t *testing.T) {
		f.put(portEntries(p, ifA))
		want(t, f.pass(progUplinkIngress, q.frame()), ipExt, 50000, ipA, 80)
		f.del(portEntries(p, ifA))
		// The container's datagram is no reply any more: not from the host port.
		d := f.pass(progEndpointIngress, r.frame())
		if d.src == ipNode || d.sport == 8080 {
			t.Errorf("reply of a removed mapping translated back: %v:%d", d.src, d.sport)
		}
		if _, ok := f.ct()[fwdKey]; ok {
			t.Errorf("forward half still there")
		}
	})
	t.Run("moved to another endpoint", func(t *testing.T) {
		f.put(portEntries(p, ifA))
		want(t, f.pass(progUplinkIngress, q.frame()), ipExt, 50000, ipA, 80)
		f.port("web", f.b, ifB, 17, netip.Addr{}, 8080, 8080, 80)
		want(t, f.pass(progUplinkIngress, q.frame()), ipExt, 50000, ipB, 80)
	})
}

// TestStaleDNATFlow6 is TestStaleDNATFlow for IPv6 (pc_nat6).
func TestStaleDNATFlow6(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	f.put(uplinkEntries(ifUplink, []netip.Addr{ipNode, ipNode6}))
	p := f.port("web", f.a, ifA, 17, netip.Addr{}, 8080, 8080, 80)
	q := pkt6{src: ipExt6, dst: ipNode6, next: 17, sport: 50000, dport: 8080, payload: []byte("q")}
	want6(t, f.pass6(progUplinkIngress, q.frame()), ipExt6, 50000, ipA6, 80)
	want6(t, f.pass6(progUplinkIngress, q.frame()), ipExt6, 50000, ipA6, 80) // control

	f.del(portEntries(p, ifA))
	f.passUnchanged(progUplinkIngress, q.frame())
	if n := len(f.nat6()); n != 0 {
		t.Errorf("pc_nat6 holds %d halves of the removed mapping's flow", n)
	}
	f.port("web", f.b, ifB, 17, netip.Addr{}, 8080, 8080, 80)
	want6(t, f.pass6(progUplinkIngress, q.frame()), ipExt6, 50000, ipB6, 80)
}
