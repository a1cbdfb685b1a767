package conformance

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// A blocked check proves that nothing reached the target, three ways at
// once: the client hears nothing until its timeout (a refusal or a reset is
// an answer from a stack, so the packet got through); the listener in the
// target that would have taken the packet saw nothing; and a capture of the
// protocol in the target's namespace saw nothing arrive while the probe
// ran, which also catches a packet whose answer was lost on the way back.
// Every caller keeps a positive control beside its blocked checks: the
// same client reaching something it may reach.

// captureGrace is how long a blocked check still waits, once the client
// gave up, for a packet that was in flight.
const captureGrace = 200 * time.Millisecond

// blockedTCP expects that no TCP connection from ns to dst is set up and
// that nothing reaches srv, the listener in the target that would take it.
func blockedTCP(t *testing.T, from *nstest.NS, dst string, srv *nstest.TCPServer, opts ...nstest.DialOptions) {
	t.Helper()
	what := fmt.Sprintf("tcp %s -> %s", from, dst)
	quiet := watchTCP(t, srv)
	r := nstest.DialTCP(from, dst, dialOpts(probeTimeout, opts))
	silent(t, what, r.String(), r.Err)
	quiet(what)
}

// blockedUDP expects that a datagram from ns to dst gets no answer and never
// reaches srv, the listener in the target that would receive it.
func blockedUDP(t *testing.T, from *nstest.NS, dst string, srv *nstest.UDPServer, opts ...nstest.DialOptions) {
	t.Helper()
	what := fmt.Sprintf("udp %s -> %s", from, dst)
	tag := unique("blocked")
	quiet := watchUDP(t, srv, tag)
	r := udpClient(t, from, dst, dialOpts(probeTimeout, opts)).Exchange(tag)
	silent(t, what, r.String(), r.Err)
	quiet(what)
}

// blockedPing expects no ICMP echo reply from dst and no echo request
// arriving in target, the namespace that owns dst (its stack would answer).
func blockedPing(t *testing.T, from *nstest.NS, dst string, target *nstest.NS) {
	t.Helper()
	what := fmt.Sprintf("ping %s -> %s", from, dst)
	c := nstest.MustCapture(t, target, nstest.CaptureICMP)
	defer c.Close()
	err := nstest.Ping(from, dst, probeTimeout)
	silent(t, what, "a reply", err)
	noArrival(t, what, c, target, "an echo request", nstest.Arrival.IsEchoRequest)
}

// nodeAnswersTCP expects a TCP connection from ns to dst, a node address
// and port that no mapping covers, to be answered by the node's own
// listener there (named "node"), and nothing to reach srv, the container
// listener a wrong mapping would forward it to. The node's own answer is
// what a user sees; without a listener the node would refuse, and a
// refusal does not tell which stack got the packet.
func nodeAnswersTCP(t *testing.T, from *nstest.NS, dst string, srv *nstest.TCPServer) {
	t.Helper()
	quiet := watchTCP(t, srv)
	reachTCP(t, from, dst, "node")
	quiet(fmt.Sprintf("tcp %s -> %s", from, dst))
}

// nodeAnswersUDP is nodeAnswersTCP for a datagram.
func nodeAnswersUDP(t *testing.T, from *nstest.NS, dst string, srv *nstest.UDPServer) {
	t.Helper()
	tag := unique("node")
	quiet := watchUDP(t, srv, tag)
	r := udpClient(t, from, dst).Exchange(tag)
	switch {
	case !r.OK():
		t.Errorf("udp %s -> %s: want answer from node, %v", from, dst, r.Err)
	case r.Server != "node":
		t.Errorf("udp %s -> %s: answered by %s, want node", from, dst, r.Server)
	}
	quiet(fmt.Sprintf("udp %s -> %s", from, dst))
}

// silent fails unless what the client of a blocked check got (err, or
// answer when err is nil) is silence until its timeout.
func silent(t *testing.T, what, answer string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: want blocked, but the packet got through: %s", what, answer)
	case isRefusal(err):
		t.Errorf("%s: want blocked, but the packet got through: a stack refused or reset it (%v)", what, err)
	case !isTimeout(err):
		t.Errorf("%s: could not check (the client failed by itself): %v", what, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// isRefusal tells an answer from a stack: a TCP reset, an ICMP port
// unreachable, a peer that closed the connection.
func isRefusal(err error) bool {
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, io.EOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// watchTCP starts watching the target of a TCP probe: srv and a capture
// in its namespace. The returned func, called once the probe is over, fails
// the test if srv accepted a connection since, or if any SYN arrived in the
// namespace (a SYN to another port is a leak too).
func watchTCP(t *testing.T, srv *nstest.TCPServer) func(what string) {
	t.Helper()
	c := nstest.MustCapture(t, srv.NS, nstest.CaptureTCP)
	before := len(srv.Peers())
	return func(what string) {
		t.Helper()
		defer c.Close()
		for _, p := range srv.Peers()[before:] {
			t.Errorf("%s: want blocked, but the packet got through: %s in %s accepted a connection from %s", what, srv.Name, srv.NS, p)
		}
		noArrival(t, what, c, srv.NS, "a SYN", nstest.Arrival.IsSYN)
	}
}

// watchUDP is watchTCP for a datagram carrying tag: srv must receive no
// datagram at all, the capture none carrying tag.
func watchUDP(t *testing.T, srv *nstest.UDPServer, tag string) func(what string) {
	t.Helper()
	c := nstest.MustCapture(t, srv.NS, nstest.CaptureUDP)
	before := len(srv.Received())
	return func(what string) {
		t.Helper()
		defer c.Close()
		// The probe's own datagrams: a late copy of an earlier control
		// (sent more than once) is no leak of this probe.
		for _, d := range srv.Received()[before:] {
			if strings.HasPrefix(d.Payload, tag) {
				t.Errorf("%s: want blocked, but the packet got through: %s in %s received %q from %s", what, srv.Name, srv.NS, d.Payload, d.From)
			}
		}
		noArrival(t, what, c, srv.NS, "the datagram", func(a nstest.Arrival) bool {
			return strings.HasPrefix(string(a.UDPData()), tag)
		})
	}
}

// noArrival fails the test for every packet the capture in ns saw that
// match says belongs to the probe.
func noArrival(t *testing.T, what string, c *nstest.Capture, ns *nstest.NS, desc string, match func(nstest.Arrival) bool) {
	t.Helper()
	got, err := c.Arrivals(captureGrace)
	if err != nil {
		t.Errorf("%s: could not read the capture in %s: %v", what, ns, err)
		return
	}
	for _, a := range got {
		if match(a) {
			t.Errorf("%s: want blocked, but the packet got through: %s arrived in %s (%v)", what, desc, ns, a)
		}
	}
}
