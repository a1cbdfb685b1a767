package model

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func base(t *testing.T) *Resolved {
	t.Helper()
	r := NewResolved()
	must(t)(r.PutNetwork(Network{Name: "default", Bridge: "pc0", Subnet: "172.17.0.0/16", Subnet6: "fd00:17::/64"}))
	must(t)(r.PutEndpoint(Endpoint{ID: "web", Network: "default", IP: "172.17.0.2", Netns: "/run/netns/web", Name: "web"}))
	must(t)(r.PutEndpoint(Endpoint{ID: "db", Network: "default", IP: "172.17.0.5", IP6: "fd00:17::5", Netns: "/run/netns/db",
		Name: "db1", Hostname: "dbhost", Exposed: []PortProto{{5432, "tcp"}}, Env: []string{"PGVER=16", "PATH=/bin"}}))
	must(t)(r.PutPort(PortMapping{ID: "web80", Endpoint: "web", Proto: "tcp", HostPort: 8080, Port: 80}))
	return r
}

func must(t *testing.T) func(*Delta, error) {
	return func(_ *Delta, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Every refusal names the field and the value, and changes nothing.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name   string
		op     Op
		status int
		field  string
		value  string
	}{
		{"bad cidr", Op{Kind: "network", Network: &Network{Name: "n", Subnet: "172.18.0.0/33"}}, 400, "subnet", "172.18.0.0/33"},
		{"host bits", Op{Kind: "network", Network: &Network{Name: "n", Subnet: "172.18.0.1/16"}}, 400, "subnet", "172.18.0.0/16"},
		{"v6 as v4", Op{Kind: "network", Network: &Network{Name: "n", Subnet: "fd00::/64"}}, 400, "subnet", "fd00::/64"},
		{"overlap", Op{Kind: "network", Network: &Network{Name: "n", Bridge: "pc1", Subnet: "172.17.8.0/24"}}, 409, "subnet", "default"},
		{"bridge taken", Op{Kind: "network", Network: &Network{Name: "n", Bridge: "pc0", Subnet: "172.18.0.0/16"}}, 409, "bridge", "pc0"},
		{"gateway outside", Op{Kind: "network", Network: &Network{Name: "n", Bridge: "pc1", Subnet: "172.18.0.0/16", Gateway: "172.19.0.1"}}, 400, "gateway", "172.19.0.1"},
		{"bad mtu", Op{Kind: "network", Network: &Network{Name: "n", Bridge: "pc1", Subnet: "172.18.0.0/16", MTU: 100}}, 400, "mtu", "100"},
		{"in use", Op{Kind: "network", Network: &Network{Name: "default", Bridge: "pc0", Subnet: "172.18.0.0/16"}}, 409, "subnet", "default"},
		{"delete in use", Op{Kind: "network", Delete: true, Key: "default"}, 409, "name", "default"},
		{"unknown network", Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "x", Network: "nope", IP: "172.17.0.9", Netns: "/run/netns/x"}}, 400, "network", "nope"},
		{"ip outside", Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "x", Network: "default", IP: "10.0.0.9", Netns: "/run/netns/x"}}, 400, "ip", "10.0.0.9"},
		{"ip is gateway", Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "x", Network: "default", IP: "172.17.0.1", Netns: "/run/netns/x"}}, 400, "ip", "172.17.0.1"},
		{"ip broadcast", Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "x", Network: "default", IP: "172.17.255.255", Netns: "/run/netns/x"}}, 400, "ip", "172.17.255.255"},
		{"ip taken", Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "x", Network: "default", IP: "172.17.0.2", Netns: "/run/netns/x"}}, 409, "ip", "web"},
		{"bad mac", Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "x", Network: "default", IP: "172.17.0.9", Netns: "/run/netns/x", MAC: "01:00:5e:00:00:01"}}, 400, "mac", "01:00:5e:00:00:01"},
		{"no attachment", Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "x", Network: "default", IP: "172.17.0.9"}}, 400, "host_ifname", "netns"},
		{"relative netns", Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "x", Network: "default", IP: "172.17.0.9", Netns: "x"}}, 400, "netns", "x"},
		{"exposed port 0", Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "x", Network: "default", IP: "172.17.0.9", Netns: "/n", Exposed: []PortProto{{0, "tcp"}}}}, 400, "exposed.port", "0"},
		{"port 0", Op{Kind: "port", Port: &PortMapping{ID: "p", Endpoint: "web", Proto: "tcp", HostPort: 0, Port: 80}}, 400, "host_port", "0"},
		{"port too big", Op{Kind: "port", Port: &PortMapping{ID: "p", Endpoint: "web", Proto: "tcp", HostPort: 8081, Port: 65536}}, 400, "port", "65536"},
		{"bad proto", Op{Kind: "port", Port: &PortMapping{ID: "p", Endpoint: "web", Proto: "icmp", HostPort: 8081, Port: 80}}, 400, "proto", "icmp"},
		{"range lengths", Op{Kind: "port", Port: &PortMapping{ID: "p", Endpoint: "web", Proto: "tcp", HostPortRange: "8000-8099", PortRange: "8000-8009"}}, 400, "port_range", "8000-8009"},
		{"range reversed", Op{Kind: "port", Port: &PortMapping{ID: "p", Endpoint: "web", Proto: "tcp", HostPortRange: "9000-8000", PortRange: "8000-9000"}}, 400, "host_port_range", "9000-8000"},
		{"unknown endpoint", Op{Kind: "port", Port: &PortMapping{ID: "p", Endpoint: "ghost", Proto: "tcp", HostPort: 8081, Port: 80}}, 400, "endpoint", "ghost"},
		{"v6 host ip without ip6", Op{Kind: "port", Port: &PortMapping{ID: "p", Endpoint: "web", Proto: "tcp", HostIP: "2001:db8::1", HostPort: 8081, Port: 80}}, 400, "host_ip", "2001:db8::1"},
		{"collision", Op{Kind: "port", Port: &PortMapping{ID: "p", Endpoint: "db", Proto: "tcp", HostIP: "192.0.2.1", HostPort: 8080, Port: 80}}, 409, "host_port", "web80"},
		{"range collision", Op{Kind: "port", Port: &PortMapping{ID: "p", Endpoint: "db", Proto: "tcp", HostPortRange: "8000-8100", PortRange: "8000-8100"}}, 409, "host_port", "web80"},
		{"link to itself", Op{Kind: "link", Link: &Link{Parent: "web", Alias: "me", Child: "web"}}, 400, "child", "web"},
		{"link unknown child", Op{Kind: "link", Link: &Link{Parent: "web", Alias: "db", Child: "ghost"}}, 400, "child", "ghost"},
		{"bad alias", Op{Kind: "link", Link: &Link{Parent: "web", Alias: "a b", Child: "db"}}, 400, "alias", "a b"},
		{"bad backend", Op{Kind: "settings", Settings: &Settings{Backend: "xdp"}}, 400, "backend", "xdp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectRefusal(t, base(t), c.op, c.status, c.field, c.value) })
	}
}

func TestDefaultsAndViews(t *testing.T) {
	r := base(t)
	n := r.Networks["default"].View()
	if n.Gateway != "172.17.0.1" || n.Gateway6 != "fd00:17::1" || !*n.ICC || !*n.Masquerade {
		t.Errorf("network defaults: %+v", n)
	}
	e := r.Endpoints["web"].View()
	if e.MAC != "02:42:ac:11:00:02" || e.Ifname != "eth0" || !strings.HasPrefix(e.HostVeth, "pcv") {
		t.Errorf("endpoint defaults: %+v", e)
	}
	p := r.Ports["web80"]
	if p.HostLo != 8080 || p.HostHi != 8080 || p.Lo != 80 || p.Proto != ProtoTCP || p.HostIP.IsValid() {
		t.Errorf("port: %+v", p)
	}
	must(t)(r.PutPort(PortMapping{ID: "same", Endpoint: "web", Proto: "udp", HostPort: 53}))
	if r.Ports["same"].Lo != 53 {
		t.Errorf("a mapping without port uses the host port")
	}
}

// The link of behaviour.md section 1: alias db, child 172.17.0.5 exposing 5432/tcp.
func TestLinkEnv(t *testing.T) {
	r := base(t)
	must(t)(r.PutLink(Link{Parent: "web", Alias: "db", Child: "db"}))
	v := r.Links["web/db"].View()
	want := []string{
		"DB_NAME=/web/db",
		"DB_PORT=tcp://172.17.0.5:5432",
		"DB_PORT_5432_TCP=tcp://172.17.0.5:5432",
		"DB_PORT_5432_TCP_ADDR=172.17.0.5",
		"DB_PORT_5432_TCP_PORT=5432",
		"DB_PORT_5432_TCP_PROTO=tcp",
		"DB_ENV_PGVER=16",
	}
	if !reflect.DeepEqual(v.Env, want) {
		t.Errorf("env:\n got %q\nwant %q", v.Env, want)
	}
	if v.Hosts != "172.17.0.5 db dbhost db1" {
		t.Errorf("hosts line %q", v.Hosts)
	}
}

// Replacing an endpoint re-points its ports and links; Undo restores all.
func TestCascadeAndUndo(t *testing.T) {
	r := base(t)
	must(t)(r.PutLink(Link{Parent: "web", Alias: "db", Child: "db"}))
	before := r.State()
	d, err := r.PutEndpoint(Endpoint{ID: "web", Network: "default", IP: "172.17.0.3", Netns: "/run/netns/web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Endpoints) != 1 || len(d.Ports) != 1 || len(d.Links) != 1 || r.Ports["web80"].EP.IP.String() != "172.17.0.3" {
		t.Fatalf("delta %+v", d)
	}
	r.Undo(d)
	if !reflect.DeepEqual(r.State(), before) || r.Ports["web80"].EP.IP.String() != "172.17.0.2" {
		t.Fatal("undo did not restore the state")
	}
	// The index was restored too: the old IP is taken again, the new one free.
	if _, err := r.PutEndpoint(Endpoint{ID: "x", Network: "default", IP: "172.17.0.2", Netns: "/n"}); err == nil {
		t.Error("ip of restored endpoint accepted twice")
	}
	d, _ = r.DeleteEndpoint("web")
	if len(d.Ports) != 1 || len(d.Links) != 1 || len(r.Ports) != 0 || len(r.Links) != 0 {
		t.Errorf("delete endpoint did not take its ports and links: %+v", d)
	}
	if d, err := r.DeleteEndpoint("web"); err != nil || !d.Empty() {
		t.Error("deleting an absent endpoint must be a no-op")
	}
}

// A change to one mapping touches only that mapping, whatever the number.
func TestPortChangeIsLocal(t *testing.T) {
	r := base(t)
	for i := 0; i < 20000; i++ {
		must(t)(r.PutPort(PortMapping{ID: fmt.Sprint("p", i), Endpoint: "db", Proto: "udp", HostPort: 10000 + i, Port: 53}))
	}
	d, err := r.PutPort(PortMapping{ID: "one", Endpoint: "db", Proto: "tcp", HostPort: 9999, Port: 53})
	if err != nil || len(d.Ports) != 1 || len(d.Endpoints) != 0 {
		t.Fatalf("delta %+v err %v", d, err)
	}
	if _, err := r.PutPort(PortMapping{ID: "dup", Endpoint: "db", Proto: "udp", HostPort: 29999, Port: 53}); StatusOf(err) != http.StatusConflict {
		t.Errorf("collision with the last of 20000 not found: %v", err)
	}
}

func TestLoadRoundTrip(t *testing.T) {
	r := base(t)
	must(t)(r.PutLink(Link{Parent: "web", Alias: "db", Child: "db"}))
	r2, err := Load(r.State())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r2.State(), r.State()) {
		t.Error("state changed through Load")
	}
}
