package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
)

var modelName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func TestEndpointID(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 4) // Docker, containerd
	cases := []struct{ cid, ifname string }{
		{long, "eth0"},
		{long, "net1"},
		{"cnitool-0c1a2b3c4d5e6f708192", "eth0"},
		{"a", "eth0"},
		{"pod:with/odd chars", "eth0"},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		id := EndpointID(c.cid, c.ifname)
		if !modelName.MatchString(id) {
			t.Errorf("EndpointID(%q, %q) = %q: not a valid model name", c.cid, c.ifname, id)
		}
		if seen[id] {
			t.Errorf("EndpointID(%q, %q) = %q twice", c.cid, c.ifname, id)
		}
		seen[id] = true
		if id != EndpointID(c.cid, c.ifname) {
			t.Errorf("EndpointID(%q, %q) is not stable", c.cid, c.ifname)
		}
		// Port mapping ids extend the endpoint id and must stay names.
		ports, err := portMappings(id, true, []PortMapEntry{{HostPort: 65535, ContainerPort: 80, Protocol: "sctp", HostIP: "2001:db8::1"}})
		if err != nil || !modelName.MatchString(ports[0].ID) {
			t.Errorf("port id %q of %q: %v", ports[0].ID, id, err)
		}
		if h := HostVethName(id); len(h) > 15 {
			t.Errorf("HostVethName(%q) = %q: longer than 15", id, h)
		}
	}
	if got := EndpointID(long, "eth0"); !strings.HasPrefix(got, "cni-0123456789ab-") {
		t.Errorf("EndpointID keeps no readable container id: %q", got)
	}
}

func TestParseConf(t *testing.T) {
	c, err := parseConf([]byte(`{"cniVersion":"1.0.0","name":"web","type":"portcullis-cni",
		"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != api.DefaultSocket || c.Network != "web" || len(c.RuntimeConfig.PortMappings) != 1 {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := parseConf([]byte(`{"cniVersion":"1.0.0","type":"portcullis-cni"}`)); err == nil {
		t.Error("a configuration without name or network was accepted")
	}
	_, err = parseConf([]byte(`{"cniVersion":"1.0.0","name":"x","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"bad"}]}}`))
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig {
		t.Errorf("bad prevResult: %v", err)
	}
}

func TestMismatch(t *testing.T) {
	yes := true
	have := model.Network{Name: "n", Bridge: "n", Subnet: "10.1.0.0/16", Gateway: "10.1.0.1", ICC: &yes, Masquerade: &yes}
	ok := []string{
		`{"name":"n"}`,
		`{"name":"n","subnet":"10.1.0.0/16","bridge":"n","icc":true}`,
		`{"name":"n","gateway":"10.1.0.1"}`,
	}
	for _, s := range ok {
		c, _ := parseConf([]byte(s))
		if err := c.mismatch(have); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := []string{
		`{"name":"n","subnet":"10.2.0.0/16"}`,
		`{"name":"n","icc":false}`,
		`{"name":"n","mtu":1400}`,
		`{"name":"n","subnet6":"fd00::/64"}`,
	}
	for _, s := range bad {
		c, _ := parseConf([]byte(s))
		if err := c.mismatch(have); err == nil || !strings.Contains(err.Error(), "portcullis-cni never changes") {
			t.Errorf("%s: mismatch not reported: %v", s, err)
		}
	}
}

func TestPortMappings(t *testing.T) {
	in := []PortMapEntry{
		{HostPort: 8080, ContainerPort: 80, Protocol: "TCP", HostIP: "0.0.0.0"},
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "::"}, // same mapping, other family
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
		{HostPort: 9000, ContainerPort: 90, HostIP: "192.0.2.10"},
		{HostPort: 9001, ContainerPort: 91, HostIP: "2001:db8::10"}, // no ip6: skipped
	}
	got, err := portMappings("cni-x", false, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []model.PortMapping{
		{ID: "cni-x-tcp-8080", Endpoint: "cni-x", Proto: "tcp", HostPort: 8080, Port: 80},
		{ID: "cni-x-udp-5353", Endpoint: "cni-x", Proto: "udp", HostPort: 5353, Port: 53},
		{ID: "cni-x-tcp-9000-" + hash("192.0.2.10")[:8], Endpoint: "cni-x", Proto: "tcp", HostIP: "192.0.2.10", HostPort: 9000, Port: 90},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := portMappings("cni-x", false, []PortMapEntry{{HostPort: 1, ContainerPort: 1}, {HostPort: 1, ContainerPort: 2}}); err == nil {
		t.Error("one host port mapped to two container ports was accepted")
	}
	if _, err := portMappings("cni-x", false, []PortMapEntry{{HostPort: 1, ContainerPort: 1, HostIP: "nope"}}); err == nil {
		t.Error("a bad hostIP was accepted")
	}
}

func TestEndpointAddrs(t *testing.T) {
	n := model.Network{Name: "n", Subnet: "10.1.0.0/24", Gateway: "10.1.0.1", Subnet6: "fd00:1::/64", Gateway6: "fd00:1::1"}
	alloc := func(js string) *types100.Result {
		r, err := types100.NewResult([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		return r.(*types100.Result)
	}
	r := alloc(`{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1"},{"address":"fd00:1::5/64"}]}`)
	a, err := endpointAddrs(n, r)
	if err != nil {
		t.Fatal(err)
	}
	if a.ip4.String() != "10.1.0.5" || a.ip6.String() != "fd00:1::5" || !r.IPs[1].Gateway.Equal(net.ParseIP("fd00:1::1")) {
		t.Errorf("addrs %+v, ips %v", a, r.IPs)
	}
	addDefaultRoutes(r, a)
	if len(r.Routes) != 2 || r.Routes[0].Dst.String() != "0.0.0.0/0" || r.Routes[1].Dst.String() != "::/0" {
		t.Errorf("routes %v", r.Routes)
	}
	bad := []string{
		`{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.254"}]}`, // other gateway
		`{"cniVersion":"1.0.0","ips":[{"address":"fd00:1::5/64"}]}`,                       // no IPv4
		`{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24"},{"address":"10.1.0.6/24"}]}`,
	}
	for _, js := range bad {
		if _, err := endpointAddrs(n, alloc(js)); err == nil {
			t.Errorf("%s: accepted", js)
		}
	}
}

func TestSynthesizedIPAM(t *testing.T) {
	stdin := []byte(`{"cniVersion":"1.1.0","name":"n","type":"portcullis-cni","subnet":"10.1.0.0/24","subnet6":"fd00:1::/64"}`)
	c, err := parseConf(stdin)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := newIPAM(stdin, c, "")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Name string
		IPAM struct {
			Type   string
			Ranges [][]map[string]string
		}
	}
	if err := json.Unmarshal(ip.stdin, &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "n" || got.IPAM.Type != "host-local" || len(got.IPAM.Ranges) != 2 || got.IPAM.Ranges[1][0]["subnet"] != "fd00:1::/64" {
		t.Errorf("synthesized ipam: %s", ip.stdin)
	}
	c.Subnet = ""
	if _, err := newIPAM(stdin, c, ""); err == nil {
		t.Error("no ipam and no subnet was accepted")
	}
}

// Without an agent, STATUS says "not available" (50) and ADD and DEL say
// "try again later" (11): ADD before it allocates anything; DEL after it
// removed what it can alone (here: nothing is there, and IPAM is not
// found: CNI_PATH is empty, which it says too).
func TestNoAgent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent.sock")
	conf := []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"n","type":"portcullis-cni","socket":%q,"subnet":"10.1.0.0/24"}`, sock))
	args := &skel.CmdArgs{ContainerID: "c1", Netns: "/run/netns/absent", IfName: "eth0", StdinData: conf}
	cases := []struct {
		name string
		do   func(*skel.CmdArgs) error
		code uint
	}{
		{"STATUS", Status, types.ErrPluginNotAvailable},
		{"ADD", Add, types.ErrTryAgainLater},
		{"DEL", Del, types.ErrTryAgainLater},
	}
	for _, c := range cases {
		err := c.do(args)
		var te *types.Error
		if !errors.As(err, &te) || te.Code != c.code || !strings.Contains(te.Msg, sock) {
			t.Errorf("%s without an agent: %#v; want code %d naming %s", c.name, err, c.code, sock)
		}
	}
}
