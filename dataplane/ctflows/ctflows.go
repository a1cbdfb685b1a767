// Package ctflows lists and flushes the kernel's connection tracking over
// netlink, in the network namespace of the calling thread: the flow table
// of the nftables backend, whose NAT is netfilter's own.
package ctflows

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/model"
)

// List returns the conntrack entries that f selects.
func List(_ context.Context, f dataplane.FlowFilter) ([]dataplane.Flow, error) {
	c, err := conntrack.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	flows, err := dump(c)
	if err != nil {
		return nil, err
	}
	var out []dataplane.Flow
	for _, cf := range flows {
		if fl := convert(cf); f.Match(fl) {
			out = append(out, fl)
		}
	}
	return out, nil
}

// dump returns every entry, IPv4 and IPv6.
func dump(c *conntrack.Conn) ([]conntrack.Flow, error) {
	flows, err := c.Dump(nil)
	if err != nil {
		return nil, fmt.Errorf("conntrack dump: %w", err)
	}
	return flows, nil
}

// Flush deletes the entries that f selects and returns how many.
func Flush(ctx context.Context, f dataplane.FlowFilter) (int, error) {
	c, err := conntrack.Dial(nil)
	if err != nil {
		return 0, fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	flows, err := dump(c)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, cf := range flows {
		if !f.Match(convert(cf)) {
			continue
		}
		if err := c.Delete(cf); err == nil {
			n++
		}
	}
	return n, nil
}

func convert(cf conntrack.Flow) dataplane.Flow {
	tuple := func(t conntrack.Tuple) [2]netip.AddrPort {
		return [2]netip.AddrPort{
			netip.AddrPortFrom(t.IP.SourceAddress, t.Proto.SourcePort),
			netip.AddrPortFrom(t.IP.DestinationAddress, t.Proto.DestinationPort),
		}
	}
	fl := dataplane.Flow{
		Proto:   protoName(cf.TupleOrig.Proto.Protocol),
		Orig:    tuple(cf.TupleOrig),
		Reply:   tuple(cf.TupleReply),
		Expires: time.Duration(cf.Timeout) * time.Second,
	}
	if cf.ProtoInfo.TCP != nil {
		fl.State = tcpStates[cf.ProtoInfo.TCP.State]
	}
	if cf.Status.SrcNAT() {
		fl.NAT = append(fl.NAT, "snat")
	}
	if cf.Status.DstNAT() {
		fl.NAT = append(fl.NAT, "dnat")
	}
	return fl
}

func protoName(p uint8) string {
	if p == 58 {
		return "icmpv6"
	}
	return model.ProtoName(p)
}

// tcpStates are the kernel's TCP_CONNTRACK_* names.
var tcpStates = map[uint8]string{
	0: "none", 1: "syn_sent", 2: "syn_recv", 3: "established", 4: "fin_wait",
	5: "close_wait", 6: "last_ack", 7: "time_wait", 8: "close", 9: "syn_sent2",
}
