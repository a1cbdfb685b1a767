package nft

import (
	"fmt"
	"net"
	"testing"

	"github.com/portcullis/portcullis/dataplane/bgqueue"
	"github.com/portcullis/portcullis/dataplane/model"
)

// holdConntrack keeps the backend's conntrack clean-up from running until
// the returned release is called (or the test ends), as a busy conntrack
// table would: whatever stops a stale flow meanwhile is the ruleset alone.
func holdConntrack(t *testing.T, b *Backend) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	released := false
	release = func() {
		if !released {
			released = true
			close(gate)
		}
	}
	b.ct.Close()
	b.ct = bgqueue.New(func(ms []ctMatch) { <-gate; b.cleanConntrack(ms) })
	t.Cleanup(release)
	return release
}

// TestTrafficStaleFlowGuard (B13): once the API has removed or moved a
// mapping, the flows it translated stop, although their conntrack entries
// are still there (the clean-up is held back). The controls: the same
// datagrams get through with the guard's chains flushed, so the entry was
// live; and once the clean-up ran, the client reaches the new target.
func TestTrafficStaleFlowGuard(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	release := holdConntrack(t, tp.b)
	at1 := udpServe(t, tp.c1H, ":53")
	at2 := udpServe(t, tp.c2H, ":53")

	// flowTo publishes id (udp hostPort to c1:53) and opens a flow through it.
	flowTo := func(t *testing.T, id string, hostPort int) *net.UDPConn {
		tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: id, Endpoint: "c1",
			Proto: "udp", HostPort: hostPort, Port: 53}})
		c := udpDial(t, tp.extH, tp.extIP+":4"+fmt.Sprint(hostPort), tp.nodeIP+":"+fmt.Sprint(hostPort))
		send(c, "published")
		received(t, at1, "published")
		return c
	}

	t.Run("removed", func(t *testing.T) {
		c := flowTo(t, "gone", 5353)

		tp.do(model.Op{Kind: "port", Delete: true, Key: "gone"})
		send(c, "removed")
		notReceived(t, at1, "removed")

		// Control: without the guard the entry still translates.
		for _, ch := range []string{chainStaleHost, chainStaleTarget} {
			inNSExec(t, tp.node, "nft", "flush", "chain", "inet", TableName, ch)
		}
		send(c, "unguarded")
		received(t, at1, "unguarded")
		if err := tp.b.Apply(t.Context(), tp.want, nil, true); err != nil {
			t.Fatal(err)
		}
		send(c, "guarded again")
		notReceived(t, at1, "guarded again")
	})

	t.Run("moved to another endpoint", func(t *testing.T) {
		c := flowTo(t, "moved", 5354)

		tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "moved", Endpoint: "c2",
			Proto: "udp", HostPort: 5354, Port: 53}})
		send(c, "stale")
		notReceived(t, at1, "stale")

		release()
		tp.b.WaitConntrack()
		send(c, "to c2")
		received(t, at2, "to c2")
	})

	drops, err := tp.b.Drops(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drops {
		if d.Reason == "stale" && d.Packets == 0 {
			t.Errorf("drop-stale counted nothing")
		}
	}
}
