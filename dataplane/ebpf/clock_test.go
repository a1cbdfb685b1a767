package ebpf

import (
	"runtime"
	"testing"
	"time"
)

func TestMatchHZ(t *testing.T) {
	for _, tc := range []struct {
		tick float64
		hz   int
	}{{4e6, 250}, {4.05e6, 250}, {1e7, 100}, {3333333, 300}, {1e6, 1000}, {0.99e6, 1000}} {
		if hz, err := matchHZ(tc.tick); err != nil || hz != tc.hz {
			t.Errorf("tick %.0f ns: HZ %d, %v; want %d", tc.tick, hz, err, tc.hz)
		}
	}
	for _, tick := range []float64{3.6e6, 2e6, 5e6, 0} {
		if hz, err := matchHZ(tick); err == nil {
			t.Errorf("tick %.0f ns matched HZ %d", tick, hz)
		}
	}
}

// TestClock: the programs' deadlines, on the jiffies clock, agree with
// CLOCK_MONOTONIC (which the agent's garbage collector reads) to a tick.
func TestClock(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	c := f.d.clock
	if c.err != nil {
		if runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" {
			t.Fatalf("no jiffies clock on %s, where HZ is one of %v: %v", runtime.GOARCH, tickHZs, c.err)
		}
		t.Skipf("no jiffies clock: %v", c.err)
	}
	t.Logf("clock: %s, offset %d", c.mode(), int64(c.offset))
	syn := testConfig().TCPSynTimeout
	for i := range 20 {
		sport := uint16(42000 + i)
		before := monoNow(t)
		f.pass(progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: sport, dport: 443, tcpFlags: 0x02}.frame())
		after := monoNow(t)
		e, ok := f.ct()[ctKey(ipA, sport, ipExt, 443, 6)]
		if !ok {
			t.Fatal("no flow")
		}
		lo, hi := before+uint64(syn)-2*c.tickNs, after+uint64(syn)
		if e.Expires < lo || e.Expires > hi {
			t.Fatalf("deadline %d is %v from now+%v, want within [-2 ticks, 0] (tick %v)", e.Expires,
				time.Duration(int64(e.Expires)-int64(before+uint64(syn))), syn, time.Duration(c.tickNs))
		}
		time.Sleep(3 * time.Millisecond)
	}
	coarse := newFixture(t, fixtureOpts{icc: true, masquerade: true, cfg: func(c *Config) { c.CoarseClock = true }})
	if coarse.d.clock.err == nil {
		t.Fatal("CoarseClock did not turn the jiffies clock off")
	}
}
