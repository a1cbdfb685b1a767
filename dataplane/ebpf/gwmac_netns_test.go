package ebpf

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/portcullis/portcullis/dataplane/model"
)

// TestGatewayMACFollowsAdoptedBridge: a bridge the agent did not create
// (as docker0) takes the MAC of a veth that joins it when that MAC is the
// lowest; the endpoint change that plugged the veth brings pc_networks'
// gw_mac up to date.
func TestGatewayMACFollowsAdoptedBridge(t *testing.T) {
	tp := newNetnsTopo(t)
	be := tp.newBackend(t)
	ctx := context.Background()
	tp.do(t, func() error { return be.Apply(ctx, tp.want, nil, true) })

	low := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	// What the reconciler does before the backend sees the endpoint.
	for _, args := range [][]string{
		{"link", "add", "veth-c", "address", low.String(), "type", "veth", "peer", "name", "ctr-c"},
		{"link", "set", "veth-c", "master", "pc0", "up"},
	} {
		tp.ns.MustIP(t, args...)
	}
	gwMAC := func() (kernel, inMap net.HardwareAddr) {
		tp.do(t, func() error {
			br, err := netlink.LinkByName("pc0")
			if err != nil {
				return err
			}
			var v bpfNetwork
			if err := be.dp.maps[mapNetworks].Lookup(uint32(br.Attrs().Index), &v); err != nil {
				return err
			}
			kernel, inMap = br.Attrs().HardwareAddr, net.HardwareAddr(v.GwMac[:])
			return nil
		})
		return kernel, inMap
	}
	if kernel, inMap := gwMAC(); !bytes.Equal(kernel, low) || bytes.Equal(inMap, low) {
		t.Fatalf("bridge MAC %v, gw_mac %v: want the bridge on the new veth's %v and the map not yet (the test proves nothing)", kernel, inMap, low)
	}

	c := &model.REndpoint{ID: "c", Net: tp.n, IP: netip.MustParseAddr("172.17.0.9"), MAC: net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0, 9}, HostIfname: "veth-c"}
	tp.want.Endpoints["c"] = c
	tp.do(t, func() error {
		return be.Apply(ctx, tp.want, &model.Delta{Endpoints: []model.EndpointChange{{New: c}}}, false)
	})
	if kernel, inMap := gwMAC(); !bytes.Equal(inMap, kernel) {
		t.Errorf("gw_mac %v after the endpoint change, the bridge has %v", inMap, kernel)
	}
}
