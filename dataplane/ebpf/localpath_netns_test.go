package ebpf

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// localPathRules is the least a netfilter companion does for connections
// the node itself opens to published ports (B10), which never cross the
// uplink's tc hooks: DNAT in output, and masquerade when the translated
// connection leaves through the bridge, so the container answers the
// gateway and conntrack hands the answer back to the node. The agent's
// companion (dataplane/nft, ModeLocal) does this with its maps.
const localPathRules = `
table inet pc-localpath-test {
	chain output {
		type nat hook output priority -100;
		ip daddr { 127.0.0.1, 192.0.2.1 } meta l4proto { tcp, udp } th dport 8080 dnat ip to 172.17.0.2:80
	}
	chain postrouting {
		type nat hook postrouting priority 100;
		oifname "pc0" ct status dnat masquerade
	}
}
`

// TestLocalPath: node -> 127.0.0.1:8080 and node -> 192.0.2.1:8080 reach
// container a through netfilter; the container's answers, addressed to the
// gateway, cross pc_endpoint_ingress, which must let them up to the stack
// untouched (no eBPF flow or policy of its own may claim them), even when
// the port the node's client uses is published too.
func TestLocalPath(t *testing.T) {
	for _, fast := range []bool{false, true} {
		t.Run(fmt.Sprintf("fast-path=%v", fast), func(t *testing.T) {
			requireTCX(t)
			tp := newTrafficTopo(t, AttachTCX, false, fast)
			if err := tp.node.SetSysctl("net.ipv4.conf.all.route_localnet", "1"); err != nil {
				t.Fatal(err)
			}
			if out, err := tp.node.Exec("sh", "-c", "nft -f - <<'EOF'\n"+localPathRules+"EOF\n"); err != nil {
				t.Skipf("nft in the node namespace: %v: %s", err, strings.TrimSpace(out))
			}
			// A published range that holds the client port below: the
			// container's SYN-ACK to gateway:45000 must not be taken
			// for a container opening a hairpin flow to b.
			hij := &model.RPort{ID: "hijack", EP: tp.b, Proto: 6, HostLo: 45000, HostHi: 45010, Lo: 5432}
			tp.want.Ports["hijack"] = hij
			tp.apply(t, &model.Delta{Ports: []model.PortChange{{New: hij}}})
			nstest.ListenTCP(t, tp.ca, "a", ":80")
			nstest.ListenUDP(t, tp.ca, "a", ":80")
			nstest.ListenTCP(t, tp.cb, "b", ":5432")

			for _, dst := range []string{"127.0.0.1:8080", "192.0.2.1:8080"} {
				if r := nstest.DialTCP(tp.node, dst, short); !r.OK() || r.Server != "a" || r.Seen.Addr() != ipGW {
					t.Errorf("tcp node -> %s: %v (server %q, seen %v)", dst, r, r.Server, r.Seen)
				}
				if u := nstest.ExchangeUDP(tp.node, dst, short); !u.OK() || u.Server != "a" {
					t.Errorf("udp node -> %s: %v", dst, u)
				}
				opts := short
				opts.Local = nstest.Port(45005)
				if r := nstest.DialTCP(tp.node, dst, opts); !r.OK() || r.Server != "a" {
					t.Errorf("tcp node:45005 -> %s: %v (server %q)", dst, r, r.Server)
				}
			}
			ct, err := readCT(tp.be.dp.maps[mapFlows4])
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ct {
				t.Errorf("eBPF flow for traffic netfilter translates: %+v", p)
			}
			requireNoDrops(t, tp.be)
		})
	}
}
