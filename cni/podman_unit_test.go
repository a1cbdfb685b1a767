package cni

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// TestContainerMAC: the MAC comes from runtimeConfig.mac, else from
// CNI_ARGS MAC= (Podman's --mac-address, among keys that are not ours); a
// bad one is a config error naming where it came from and the value.
func TestContainerMAC(t *testing.T) {
	for _, c := range []struct {
		rc, args, want, err string
	}{
		{"", "", "", ""},
		{"", "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.89.1.5", "", ""},
		{"", "IgnoreUnknown=1;MAC=02:aa:bb:cc:dd:01;IP=10.89.1.5", "02:aa:bb:cc:dd:01", ""},
		{"02:00:00:00:00:09", "MAC=02:aa:bb:cc:dd:01", "02:00:00:00:00:09", ""},
		{"", "MAC=01:00:5e:00:00:01", "", `CNI_ARGS MAC "01:00:5e:00:00:01"`},
		{"zz", "", "", `runtimeConfig.mac "zz"`},
	} {
		mac, err := containerMAC(RuntimeConfig{MAC: c.rc}, c.args)
		var te *types.Error
		switch {
		case c.err != "":
			if !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig || !strings.Contains(te.Msg, c.err) {
				t.Errorf("containerMAC(%q, %q) = %v, %v; want code 7 naming %s", c.rc, c.args, mac, err, c.err)
			}
		case err != nil || (mac == nil) != (c.want == "") || mac != nil && mac.String() != c.want:
			t.Errorf("containerMAC(%q, %q) = %v, %v; want %q", c.rc, c.args, mac, err, c.want)
		}
	}
}

// TestConflist: the list declares the capabilities Podman needs and
// carries the subnets in host-local's ranges and in podman_labels; bad
// input names the field and the value.
func TestConflist(t *testing.T) {
	b, err := Conflist(ConflistOptions{Name: "pcnet", Subnet: "10.89.0.0/24", Subnet6: "fd00:89::/64", Socket: "/run/x.sock"})
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		Name    string                       `json:"name"`
		Args    map[string]map[string]string `json:"args"`
		Plugins []map[string]json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(b, &l); err != nil || len(l.Plugins) != 1 {
		t.Fatalf("conflist: %v\n%s", err, b)
	}
	var p NetConf
	raw, _ := json.Marshal(l.Plugins[0])
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	caps := p.Capabilities
	if p.Type != "portcullis-cni" || p.Network != "pcnet" || p.Subnet != "10.89.0.0/24" || p.Subnet6 != "fd00:89::/64" ||
		p.Socket != "/run/x.sock" || !caps["portMappings"] || !caps["ips"] || !caps["mac"] || p.IPAM.Type != "host-local" {
		t.Errorf("plugin: %+v", p)
	}
	if !strings.Contains(string(raw), `"ranges":[[{"subnet":"10.89.0.0/24"}],[{"subnet":"fd00:89::/64"}]]`) {
		t.Errorf("ipam ranges: %s", raw)
	}
	if lb := l.Args["podman_labels"]; lb["portcullis.subnet"] != "10.89.0.0/24" || lb["portcullis.subnet6"] != "fd00:89::/64" {
		t.Errorf("podman_labels: %v", lb)
	}
	for _, bad := range []struct {
		o    ConflistOptions
		want string
	}{
		{ConflistOptions{Name: "n"}, "subnet is required"},
		{ConflistOptions{Name: "n", Subnet: "10.89.0.1/24"}, `subnet "10.89.0.1/24"`},
		{ConflistOptions{Name: "n", Subnet: "fd00::/64"}, `subnet "fd00::/64"`},
		{ConflistOptions{Name: "n", Subnet: "10.89.0.0/24", Subnet6: "10.1.0.0/16"}, `subnet6 "10.1.0.0/16"`},
		{ConflistOptions{Name: "a/b", Subnet: "10.89.0.0/24"}, `network name "a/b"`},
	} {
		if _, err := Conflist(bad.o); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Conflist(%+v) = %v; want an error with %s", bad.o, err, bad.want)
		}
	}
}
