package nstest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCapture checks that a Capture sees what blocked checks rely on it to
// see, over IPv4 and IPv6: a SYN to a port with no listener (answered by a
// reset), a datagram, an echo request; and that it sees only what reaches
// its own namespace.
func TestCapture(t *testing.T) {
	topo := NewTopology(t, Options{})
	ll, err := topo.Ext.LinkLocal(ExtIfname)
	if err != nil {
		t.Fatal(err)
	}
	linkLocal := ll.WithZone(UplinkName)
	ListenUDP(t, topo.Ext, "ext", "[::]:7000")

	for _, dst := range []string{"192.0.2.2", "2001:db8:1::2", linkLocal.String()} {
		t.Run(strings.ReplaceAll(dst, ":", "_"), func(t *testing.T) {
			tcp := MustCapture(t, topo.Ext, CaptureTCP)
			udp := MustCapture(t, topo.Ext, CaptureUDP)
			icmp := MustCapture(t, topo.Ext, CaptureICMP)
			quiet := MustCapture(t, topo.Node, CaptureUDP)
			at := func(port int) string { return fmt.Sprintf("[%s]:%d", dst, port) }

			if r := DialTCP(topo.Node, at(7001), DialOptions{Timeout: time.Second}); r.OK() {
				t.Fatalf("dial to a closed port worked: %v", r)
			}
			expect(t, tcp, "a SYN to port 7001", func(a Arrival) bool { _, d := a.Ports(); return a.IsSYN() && d == 7001 })

			tag := fmt.Sprintf("capture-%d", time.Now().UnixNano())
			if err := SendUDP(topo.Node, at(7000), tag, DialOptions{}); err != nil {
				t.Fatal(err)
			}
			expect(t, udp, "the datagram "+tag, func(a Arrival) bool { return string(a.UDPData()) == tag })

			if err := Ping(topo.Node, dst, time.Second); err != nil {
				t.Fatal(err)
			}
			expect(t, icmp, "an echo request", Arrival.IsEchoRequest)

			// The node sent the datagram: its own capture saw the answer
			// (the server's name, then the tag) but not the datagram.
			got, err := quiet.Arrivals(300 * time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			answered := false
			for _, a := range got {
				d := string(a.UDPData())
				answered = answered || strings.HasPrefix(d, "ext ") && strings.HasSuffix(d, tag)
				if d == tag {
					t.Errorf("capture in the sender's namespace saw its own datagram: %v", a)
				}
			}
			if !answered {
				t.Errorf("capture in the node saw no answer to %s among %v", tag, got)
			}
		})
	}
}

func expect(t *testing.T, c *Capture, what string, match func(Arrival) bool) {
	t.Helper()
	got, err := c.Arrivals(300 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		if match(a) {
			return
		}
	}
	t.Errorf("capture saw no %s among %v", what, got)
}
