package cni

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

const chainedPrev = `"prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
	"ips": [{"address": "10.1.2.3/16", "gateway": "10.1.0.1", "interface": 0}]}`

func mustConf(t *testing.T, stdin string) *NetConf {
	t.Helper()
	c, err := parseConf([]byte(stdin))
	if err != nil {
		t.Fatalf("parse %s: %v", stdin, err)
	}
	return c
}

// wantCode7 checks a configuration error: code 7, naming every one of
// words.
func wantCode7(t *testing.T, what string, err error, words ...string) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig {
		t.Errorf("%s: %v; want a code 7 error", what, err)
		return
	}
	for _, w := range words {
		if !strings.Contains(te.Msg, w) {
			t.Errorf("%s: %q does not name %q", what, te.Msg, w)
		}
	}
}

// The mode: a prevResult at ADD means chained, "mode" says it outright,
// anything else in "mode", or "main" with a prevResult at ADD, is refused.
func TestChainedMode(t *testing.T) {
	cases := []struct {
		name, stdin    string
		add            bool
		chained, known bool
		errWords       []string
	}{
		{"prevResult at ADD", `{"cniVersion": "1.0.0", "name": "n", ` + chainedPrev + `}`, true, true, true, nil},
		{"prevResult at DEL", `{"cniVersion": "1.0.0", "name": "n", ` + chainedPrev + `}`, false, false, false, nil},
		{"first in the list", `{"cniVersion": "1.0.0", "name": "n"}`, true, false, true, nil},
		{"mode chained at DEL", `{"cniVersion": "1.0.0", "name": "n", "mode": "chained"}`, false, true, true, nil},
		{"mode main at DEL", `{"cniVersion": "1.0.0", "name": "n", "mode": "main", ` + chainedPrev + `}`, false, false, true, nil},
		{"mode main after a plugin", `{"cniVersion": "1.0.0", "name": "n", "mode": "main", ` + chainedPrev + `}`, true, false, true, []string{"mode", "main", "first"}},
		{"unknown mode", `{"cniVersion": "1.0.0", "name": "n", "mode": "chain"}`, true, false, false, []string{"mode", `"chain"`, "chained"}},
	}
	for _, c := range cases {
		chained, known, err := chainedByConf([]byte(c.stdin), mustConf(t, c.stdin), c.add)
		if c.errWords != nil {
			wantCode7(t, c.name, err, c.errWords...)
			continue
		}
		if err != nil || chained != c.chained || known != c.known {
			t.Errorf("%s: chained %v known %v (%v); want %v %v", c.name, chained, known, err, c.chained, c.known)
		}
	}
}

// What only main mode uses is refused in chained mode, naming the key.
func TestChainedConfRefusals(t *testing.T) {
	wantCode7(t, "ipam", checkChainedConf(mustConf(t, `{"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "host-local"}}`)), "ipam", "host-local")
	wantCode7(t, "mtu", checkChainedConf(mustConf(t, `{"cniVersion": "1.0.0", "name": "n", "mtu": 1400}`)), "mtu", "1400")
	if err := checkChainedConf(mustConf(t, `{"cniVersion": "1.0.0", "name": "n", "subnet": "10.1.0.0/16"}`)); err != nil {
		t.Errorf("a chained configuration with subnet: %v", err)
	}
	c := mustConf(t, `{"cniVersion": "1.0.0", "name": "n", "bridge": "br9"}`)
	_, err := chainedNetConf(c, hostSide{veth: "veth1", bridge: "cni0"}, prevAddrs{})
	wantCode7(t, "bridge", err, "br9", "cni0")
}

// The network is made from prevResult where the configuration is silent:
// the container address's prefix, the main plugin's gateway, its bridge.
func TestChainedNetConfFromPrev(t *testing.T) {
	c := mustConf(t, `{"cniVersion": "1.0.0", "name": "n", `+chainedPrev+`}`)
	prev, err := types100.GetResult(c.PrevResult)
	if err != nil {
		t.Fatal(err)
	}
	pa, err := readPrevAddrs(prev.IPs, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := chainedNetConf(c, hostSide{veth: "veth1", bridge: "cni0"}, pa)
	if err != nil || n.Subnet != "10.1.0.0/16" || n.Gateway != "10.1.0.1" || n.Bridge != "cni0" || !n.External {
		t.Errorf("network from prevResult: %+v (%v); want external 10.1.0.0/16 via 10.1.0.1 on cni0", n, err)
	}
	two := []*types100.IPConfig{
		{Address: net.IPNet{IP: net.ParseIP("10.1.2.3").To4(), Mask: net.CIDRMask(16, 32)}},
		{Address: net.IPNet{IP: net.ParseIP("10.1.2.4").To4(), Mask: net.CIDRMask(16, 32)}},
	}
	_, err = readPrevAddrs(two, "eth0")
	wantCode7(t, "two IPv4 addresses", err, "10.1.2.3/16", "10.1.2.4/16")
	_, err = readPrevAddrs(nil, "eth0")
	wantCode7(t, "no IPv4 address", err, "eth0", "IPv4")
}
