package ebpf

import (
	"bytes"
	"testing"
)

// TestChecksumPaths runs the same translations through programs that
// update TCP and UDP checksums themselves (PC_CFG_CSUM_DIRECT) and through
// programs that leave it to bpf_l4_csum_replace: the frames that come out
// must be the same bytes, with valid checksums. (BPF_PROG_TEST_RUN's skbs
// carry full checksums; partial ones, as veths carry them, are
// TestTraffic's csum-partial cases.)
func TestChecksumPaths(t *testing.T) {
	direct := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	if err := direct.d.checksums.err; err != nil {
		if kernelAtLeast(t, 6, 2) {
			t.Fatalf("Linux 6.2 or later, but the programs cannot update checksums themselves: %v", err)
		}
		t.Skipf("programs cannot update checksums themselves here: %v", err)
	}
	helpers := newFixture(t, fixtureOpts{icc: true, masquerade: true, cfg: func(c *Config) { c.HelperChecksums = true }})
	if helpers.d.checksums.err == nil {
		t.Fatal("HelperChecksums did not turn the direct updates off")
	}
	for _, f := range []*fixture{direct, helpers} {
		f.port("web", f.a, ifA, 6, ipNode, 8080, 8080, 80)
		f.port("dns", f.a, ifA, 17, ipNode, 5353, 5353, 53)
	}
	payload := []byte("an odd-sized payload")
	for _, step := range []struct {
		name  string
		prog  string
		frame pkt4
	}{
		{"snat-tcp", progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 40000, dport: 443, tcpFlags: 0x02}},
		{"snat-reply-tcp", progUplinkIngress, pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 443, dport: 40000, tcpFlags: 0x12, payload: payload}},
		{"snat-udp", progUplinkEgress, pkt4{srcMAC: macB, src: ipB, dst: ipExt, proto: 17, sport: 6000, dport: 53, payload: payload}},
		{"snat-udp-no-checksum", progUplinkEgress, pkt4{srcMAC: macB, src: ipB, dst: ipExt, proto: 17, sport: 6001, dport: 53, noUDPCsum: true, payload: payload}},
		{"dnat-tcp", progUplinkIngress, pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 50000, dport: 8080, tcpFlags: 0x02}},
		{"dnat-reply-tcp", progEndpointIngress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 80, dport: 50000, tcpFlags: 0x12, payload: payload}},
		{"dnat-udp", progUplinkIngress, pkt4{src: ipExt, dst: ipNode, proto: 17, sport: 1234, dport: 5353, payload: payload}},
		{"dnat-reply-udp", progEndpointIngress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 53, dport: 1234, payload: payload}},
	} {
		t.Run(step.name, func(t *testing.T) {
			in := step.frame.frame()
			rd, d := direct.run(step.prog, in)
			rh, h := helpers.run(step.prog, in)
			if rd != actOK || rh != actOK {
				t.Fatalf("verdicts %d (direct) and %d (helpers), want pass", rd, rh)
			}
			if !bytes.Equal(d, h) {
				t.Fatalf("direct and helper updates differ:\ndirect  %x\nhelpers %x", d, h)
			}
			if bytes.Equal(d, in) {
				t.Fatalf("%s left the frame as it was", step.prog)
			}
			if _, err := decode4(d); err != nil {
				t.Fatal(err)
			}
		})
	}
}
