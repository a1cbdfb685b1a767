package ebpf

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Live events for pcctl trace. The datapath writes a struct pc_event to the
// pc_events ring buffer for every drop, and every new translated flow, while
// pc_trace_cfg asks for them (bpf/lib/trace.h). A Tracer opens both maps
// from the pins, so it works whether the agent runs or not; it holds the
// switch on with a lease it renews while it reads, and turns it off when
// closed. A tracer killed before it could do that stops costing the
// datapath anything when its lease runs out.
//
// The ring buffer has one read position: two tracers at once share the
// events between them, each seeing some.

// traceLease is how long the switch stays on without a renewal; a reading
// Tracer renews it every second.
const (
	traceLease = 5 * time.Second
	traceRenew = time.Second
)

// TraceEvent is one event, decoded.
type TraceEvent struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`             // drop, snat, dnat, snat+dnat
	Reason  string    `json:"reason,omitempty"` // drops: see DropReasons
	Ifindex uint32    `json:"ifindex"`          // where the program ran
	Proto   string    `json:"proto,omitempty"`  // empty when the packet was not IP
	// Src and Dst are the packet as it arrived (zero when it was not IP, or
	// too broken to read); NATSrc and NATDst what a new flow translates it to.
	Src    netip.AddrPort `json:"src"`
	Dst    netip.AddrPort `json:"dst"`
	NATSrc netip.AddrPort `json:"nat_src,omitzero"`
	NATDst netip.AddrPort `json:"nat_dst,omitzero"`
}

// Addrs are the event's addresses, translated ones included.
func (e TraceEvent) Addrs() []netip.AddrPort {
	out := []netip.AddrPort{e.Src, e.Dst}
	if e.NATSrc.IsValid() {
		out = append(out, e.NATSrc, e.NATDst)
	}
	return out
}

// TraceKinds selects what the datapath reports.
type TraceKinds struct {
	Drops bool // every drop
	NAT   bool // every new translated flow
}

func (k TraceKinds) flags() uint32 {
	var f uint32
	if k.Drops {
		f |= traceDrops
	}
	if k.NAT {
		f |= traceNAT
	}
	return f
}

// Tracer reads events from a pinned datapath.
type Tracer struct {
	cfg     *ebpf.Map
	eps     *ebpf.Map
	rd      *ringbuf.Reader
	flags   uint32
	renewed time.Time
	// wall and mono are one instant on both clocks: events carry
	// bpf_ktime_get_ns (CLOCK_MONOTONIC).
	wall time.Time
	mono uint64
}

// OpenTracer opens the event maps the backend pinned under pinDir (the
// agent's -bpffs directory; maps are in its maps/ subdirectory) and turns
// the events of kinds on. Events already waiting, from an earlier tracer,
// are discarded.
func OpenTracer(pinDir string, kinds TraceKinds) (*Tracer, error) {
	dir := pinPaths{pinDir}.maps()
	open := func(name string, ro bool) (*ebpf.Map, error) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: ro})
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no %s pinned in %s: is the eBPF backend in use, and as new as this pcctl? (pcctl status)", name, dir)
		}
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		return m, nil
	}
	t := &Tracer{flags: kinds.flags()}
	var err error
	if t.cfg, err = open(mapTraceCfg, false); err != nil {
		return nil, err
	}
	if t.eps, err = open(mapEndpoints, true); err != nil {
		t.cfg.Close()
		return nil, err
	}
	events, err := open(mapEvents, false)
	if err != nil {
		t.cfg.Close()
		t.eps.Close()
		return nil, err
	}
	t.rd, err = ringbuf.NewReader(events)
	events.Close() // the reader holds its own reference
	if err != nil {
		t.cfg.Close()
		t.eps.Close()
		return nil, fmt.Errorf("read %s: %w", mapEvents, err)
	}
	t.drain()
	t.wall, t.mono = time.Now(), monotonicNow()
	if err := t.renew(); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// drain discards what waits in the ring buffer.
func (t *Tracer) drain() {
	t.rd.SetDeadline(time.Now())
	for {
		if _, err := t.rd.Read(); err != nil {
			return
		}
	}
}

// renew turns the events on until a lease from now.
func (t *Tracer) renew() error {
	v := bpfTraceCfg{Flags: t.flags, Until: monotonicNow() + uint64(traceLease)}
	if err := t.cfg.Put(uint32(0), v); err != nil {
		return fmt.Errorf("switch tracing on: %w", err)
	}
	t.renewed = time.Now()
	return nil
}

// Next returns the next event. It blocks until there is one, or ctx ends
// (its error is returned then).
func (t *Tracer) Next(ctx context.Context) (TraceEvent, error) {
	for {
		if err := ctx.Err(); err != nil {
			return TraceEvent{}, err
		}
		if time.Since(t.renewed) >= traceRenew {
			if err := t.renew(); err != nil {
				return TraceEvent{}, err
			}
		}
		// Wake up to renew the lease and to notice ctx.
		wake := t.renewed.Add(traceRenew)
		if d, ok := ctx.Deadline(); ok && d.Before(wake) {
			wake = d
		}
		t.rd.SetDeadline(wake)
		rec, err := t.rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return TraceEvent{}, fmt.Errorf("read events: %w", err)
		}
		return t.decode(rec.RawSample)
	}
}

func (t *Tracer) decode(raw []byte) (TraceEvent, error) {
	var e bpfPcEvent
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &e); err != nil {
		return TraceEvent{}, fmt.Errorf("decode event of %d bytes: %w", len(raw), err)
	}
	ev := TraceEvent{
		Time:    t.wall.Add(time.Duration(int64(e.Ts - t.mono))),
		Ifindex: e.Ifindex,
	}
	addr := func(b [16]byte, port uint16) netip.AddrPort {
		switch e.Family {
		case 4:
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), portFromBE16(port))
		case 6:
			return netip.AddrPortFrom(netip.AddrFrom16(b), portFromBE16(port))
		}
		return netip.AddrPort{}
	}
	if e.Family != 0 {
		ev.Proto = protoName(e.Proto)
		ev.Src, ev.Dst = addr(e.Saddr, e.Sport), addr(e.Daddr, e.Dport)
	}
	switch e.Type {
	case eventDrop:
		ev.Kind, ev.Reason = "drop", dropReasonName(e.Reason)
	case eventNAT:
		ev.NATSrc, ev.NATDst = addr(e.NatSaddr, e.NatSport), addr(e.NatDaddr, e.NatDport)
		switch src, dst := ev.NATSrc != ev.Src, ev.NATDst != ev.Dst; {
		case src && dst:
			ev.Kind = "snat+dnat"
		case src:
			ev.Kind = "snat"
		default:
			ev.Kind = "dnat"
		}
	default:
		ev.Kind = fmt.Sprintf("event-%d", e.Type)
	}
	return ev, nil
}

// EndpointAddrs returns the addresses of the endpoint whose host veth has
// ifindex, from the pinned pc_endpoints (nil when there is none).
func (t *Tracer) EndpointAddrs(ifindex uint32) []netip.Addr {
	var ep bpfEndpoint
	if err := t.eps.Lookup(ifindex, &ep); err != nil {
		return nil
	}
	out := []netip.Addr{addrFromBE32(ep.Ip4)}
	if ep.Flags&epHasIP6 != 0 {
		out = append(out, netip.AddrFrom16(ep.Ip6))
	}
	return out
}

// Close turns the events off and releases the maps. Events the datapath
// wrote meanwhile stay in the ring buffer for the next tracer to discard.
func (t *Tracer) Close() error {
	err := t.cfg.Put(uint32(0), bpfTraceCfg{})
	if err != nil {
		err = fmt.Errorf("switch tracing off: %w", err)
	}
	return errors.Join(err, t.rd.Close(), t.cfg.Close(), t.eps.Close())
}
