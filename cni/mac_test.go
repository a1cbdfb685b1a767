package cni_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// TestCnitoolTuningMAC: a tuning plugin with a "mac" of its own changes
// the container's MAC after the agent registered it. This is not
// supported (docs/cni.md): what the container sends is dropped as
// spoofed, so its published port does not answer, and CHECK says why. The
// same list with tuning and no "mac" is the positive control: the port
// answers and CHECK passes.
func TestCnitoolTuningMAC(t *testing.T) {
	e := newEnv(t)
	dst := netip.AddrPortFrom(nstest.NodeAddr, hostPort).String()
	for _, c := range []struct {
		name   string
		tuning map[string]any
		works  bool
	}{
		{"plain", map[string]any{"type": "tuning"}, true},
		{"fixed", map[string]any{"type": "tuning", "mac": "02:77:00:00:00:01"}, false},
	} {
		net := e.netName() + "-" + c.name
		e.writeFile(net+".conflist", map[string]any{"cniVersion": "1.0.0", "name": net, "plugins": []any{
			map[string]any{"type": "portcullis-cni", "socket": e.agent.Socket, "network": "pcn", "bridge": "pcbr0",
				"subnet": cniSubnet, "capabilities": map[string]bool{"portMappings": true},
				"ipam": map[string]any{"type": "host-local", "dataDir": e.ipamDir,
					"ranges": [][]map[string]string{{{"subnet": cniSubnet}}}}},
			c.tuning,
		}})
		ctr := e.topo.AddContainer("t" + c.name)
		capArgs := portCap(hostPort, ctrPort)
		e.mustCnitool("add", net, ctr, capArgs)
		srv := nstest.ListenTCP(t, ctr, c.name, fmt.Sprintf(":%d", ctrPort))
		r := nstest.DialTCP(e.topo.Ext, dst, nstest.DialOptions{Timeout: 2 * time.Second})
		_, checkErr := e.cnitool("check", net, ctr, capArgs)
		if c.works {
			if !r.OK() || r.Server != c.name {
				t.Errorf("%s: ext -> %s: %v; want answered by the container", c.name, dst, r)
			}
			if checkErr != nil {
				t.Errorf("%s: CHECK: %v", c.name, checkErr)
			}
		} else {
			if r.OK() || len(srv.Peers()) != 0 {
				t.Errorf("%s: ext -> %s: %v (peers %v); want no answer (the agent drops the changed MAC)", c.name, dst, r, srv.Peers())
			}
			if checkErr == nil || !strings.Contains(checkErr.Error(), "02:77:00:00:00:01") || !strings.Contains(checkErr.Error(), "changed it") {
				t.Errorf("%s: CHECK: %v; want an error naming the changed MAC", c.name, checkErr)
			}
		}
		srv.Close()
		e.mustCnitool("del", net, ctr, capArgs)
	}
}
