package docker

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Networks and containers as dockerd 20.10 (API 1.41) answers, trimmed to
// the fields read: docker0, a user network with options, and a macvlan one.
const netsJSON = `[
 {"Name":"bridge","Id":"aaf7c3b0111c070cc360d1af70d08873202fa201dcd5a11ffffb8f661c27011b","Driver":"bridge",
  "IPAM":{"Config":[{"Subnet":"172.17.0.0/16"}]},
  "Options":{"com.docker.network.bridge.default_bridge":"true","com.docker.network.bridge.enable_icc":"true",
   "com.docker.network.bridge.enable_ip_masquerade":"false","com.docker.network.bridge.host_binding_ipv4":"0.0.0.0",
   "com.docker.network.bridge.name":"docker0"}},
 {"Name":"backend","Id":"5c0ffee0000000000000000000000000000000000000000000000000000000ab","Driver":"bridge",
  "EnableIPv6":true,
  "IPAM":{"Config":[{"Subnet":"172.30.0.0/24","Gateway":"172.30.0.1"},{"Subnet":"fd00:30::/64","Gateway":"fd00:30::1"}]},
  "Options":{"com.docker.network.bridge.enable_icc":"false","com.docker.network.bridge.enable_ip_masquerade":"false",
   "com.docker.network.bridge.host_binding_ipv4":"192.0.2.10"}},
 {"Name":"mv","Id":"77","Driver":"macvlan","IPAM":{"Config":[{"Subnet":"10.9.0.0/24"}]}},
 {"Name":"sealed","Id":"88sealed0000","Driver":"bridge","Internal":true,"IPAM":{"Config":[{"Subnet":"172.30.9.0/24"}]}}
]`

func loadNets(t *testing.T) []network.Summary {
	t.Helper()
	var nets []network.Summary
	if err := json.Unmarshal([]byte(netsJSON), &nets); err != nil {
		t.Fatal(err)
	}
	return nets
}

func ctr(t *testing.T, js string, veths map[string]string) Container {
	t.Helper()
	var info container.InspectResponse
	if err := json.Unmarshal([]byte(js), &info); err != nil {
		t.Fatalf("%v in %s", err, js)
	}
	return Container{Info: info, Veths: veths}
}

const webJSON = `{"Id":"40fb7eaeb3a63b6e7ca6ceafa36674f48b1a93806061083fb2edd10cfe75b8da","Name":"/web",
 "State":{"Running":true,"Pid":4664},
 "Config":{"Hostname":"40fb7eaeb3a6","Env":["PATH=/bin","ROLE=web"],"ExposedPorts":{"80/tcp":{},"53/udp":{}},
  "Labels":{"portcullis.snat_ip":"192.0.2.11"}},
 "HostConfig":{"NetworkMode":"default","Links":null},
 "NetworkSettings":{"SandboxKey":"/x/511e6430aad9",
  "Ports":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8080"},{"HostIp":"127.0.0.1","HostPort":"8082"}],
   "53/udp":[{"HostIp":"0.0.0.0","HostPort":"5353"}],"9999/sctp":[{"HostIp":"0.0.0.0","HostPort":"9999"}],
   "8000/tcp":[{"HostIp":"0.0.0.0","HostPort":"8000"}],"8001/tcp":[{"HostIp":"0.0.0.0","HostPort":"8001"}],
   "8002/tcp":[{"HostIp":"0.0.0.0","HostPort":"8002"}],"9000/tcp":null},
  "Networks":{"bridge":{"IPAddress":"172.17.0.2","IPPrefixLen":16,"MacAddress":"02:42:ac:11:00:02","GlobalIPv6Address":""}}}}`

const dbJSON = `{"Id":"f27ef36a603a090a2cf4177dec0c5329061e78df99eb2303b78377ed4fd97385","Name":"/db",
 "State":{"Running":true,"Pid":4727},
 "Config":{"Hostname":"f27ef36a603a","Env":null},
 "HostConfig":{"NetworkMode":"default","Links":["/web:/db/web"]},
 "NetworkSettings":{"SandboxKey":"/x/2fcbcee980fc","Ports":{},
  "Networks":{"bridge":{"IPAddress":"172.17.0.3","IPPrefixLen":16,"MacAddress":"02:42:ac:11:00:03"},
   "backend":{"IPAddress":"172.30.0.5","MacAddress":"02:42:ac:1e:00:05","GlobalIPv6Address":"fd00:30::5"}}}}`

func TestTranslateNetworks(t *testing.T) {
	d := Translate(loadNets(t), nil, Defaults{ICC: false, Masquerade: true})
	br := d.Networks["bridge"]
	// docker0 takes the agent's flags, not the options dockerd reports
	// with its iptables off (masquerade "false").
	if br.Bridge != "docker0" || br.Subnet != "172.17.0.0/16" || *br.ICC || !*br.Masquerade || br.Source != model.SourceDocker {
		t.Errorf("docker0 = %+v (icc %v masq %v)", br, *br.ICC, *br.Masquerade)
	}
	be := d.Networks["backend"]
	if be.Bridge != "br-5c0ffee00000" || be.Gateway != "172.30.0.1" || be.Subnet6 != "fd00:30::/64" ||
		be.Gateway6 != "fd00:30::1" || *be.ICC || *be.Masquerade {
		t.Errorf("user network = %+v (icc %v masq %v)", be, *be.ICC, *be.Masquerade)
	}
	if n := d.Networks["sealed"]; !n.Internal {
		t.Errorf("--internal network: %+v, want internal", n)
	}
	if _, ok := d.Networks["mv"]; ok || d.Ignored["network driver macvlan"] != 1 {
		t.Errorf("macvlan network: want ignored and counted, got %v", d.Ignored)
	}
}

func TestTranslateContainers(t *testing.T) {
	web := ctr(t, webJSON, map[string]string{"bridge": "veth1"})
	db := ctr(t, dbJSON, map[string]string{"bridge": "veth2", "backend": "veth3"})
	d := Translate(loadNets(t), []Container{web, db}, Defaults{ICC: true, Masquerade: true})
	if len(d.Problems) > 0 {
		t.Fatalf("problems: %v", d.Problems)
	}
	ep := d.Endpoints["40fb7eaeb3a6.bridge"]
	want := model.Endpoint{ID: "40fb7eaeb3a6.bridge", Network: "bridge", IP: "172.17.0.2", MAC: "02:42:ac:11:00:02",
		HostIfname: "veth1", Name: "web", Hostname: "40fb7eaeb3a6", Env: []string{"PATH=/bin", "ROLE=web"},
		Exposed: []model.PortProto{{Port: 53, Proto: "udp"}, {Port: 80, Proto: "tcp"}}, SNATIP: "192.0.2.11", Source: model.SourceDocker}
	if !sameEndpoint(ep, want) {
		t.Errorf("web endpoint\n got %+v\nwant %+v", ep, want)
	}
	if e := d.Endpoints["f27ef36a603a.backend"]; e.IP6 != "fd00:30::5" || e.HostIfname != "veth3" {
		t.Errorf("db on backend: %+v", e)
	}
	var got []string
	for _, p := range d.Ports {
		got = append(got, p.ID+" "+p.HostIP+" "+p.HostPortRange+" "+p.PortRange)
		if p.Endpoint != "40fb7eaeb3a6.bridge" {
			t.Errorf("port %s on %s, want web's bridge endpoint", p.ID, p.Endpoint)
		}
	}
	slices.Sort(got)
	// 0.0.0.0 and :: are one wildcard mapping; 8000-8002 one range; a
	// port without a binding (9000, exposed only) none.
	wantPorts := []string{
		"40fb7eaeb3a6.sctp.9999   ",
		"40fb7eaeb3a6.tcp.8000-8002  8000-8002 8000-8002",
		"40fb7eaeb3a6.tcp.8080   ",
		"40fb7eaeb3a6.tcp.8082.127.0.0.1 127.0.0.1  ",
		"40fb7eaeb3a6.udp.5353   ",
	}
	if !slices.Equal(got, wantPorts) {
		t.Errorf("ports\n got %q\nwant %q", got, wantPorts)
	}
	l, ok := d.Links["f27ef36a603a.bridge/web"]
	if !ok || l.Child != "40fb7eaeb3a6.bridge" {
		t.Errorf("links: %v", d.Links)
	}
}

func TestTranslateHostBindingAndModes(t *testing.T) {
	c := ctr(t, `{"Id":"c1c1c1c1c1c1c1","Name":"/api","State":{"Running":true},"Config":{},
	 "HostConfig":{"NetworkMode":"backend"},
	 "NetworkSettings":{"Ports":{"80/tcp":[{"HostIp":"","HostPort":"80"}]},
	  "Networks":{"backend":{"IPAddress":"172.30.0.7","MacAddress":"02:42:ac:1e:00:07"}}}}`, map[string]string{"backend": "veth7"})
	host := ctr(t, `{"Id":"h0","Name":"/h","State":{"Running":true},"Config":{},"HostConfig":{"NetworkMode":"host"},"NetworkSettings":{}}`, nil)
	d := Translate(loadNets(t), []Container{c, host}, Defaults{})
	p, ok := d.Ports["c1c1c1c1c1c1.tcp.80.192.0.2.10"]
	if !ok || p.HostIP != "192.0.2.10" {
		t.Errorf("host_binding_ipv4 not the default host address: %v", d.Ports)
	}
	sealed := ctr(t, `{"Id":"s0s0s0s0s0s0s0","Name":"/s","State":{"Running":true},"Config":{},
	 "HostConfig":{"NetworkMode":"sealed"},
	 "NetworkSettings":{"Ports":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8088"}]},
	  "Networks":{"sealed":{"IPAddress":"172.30.9.2","MacAddress":"02:42:ac:1e:09:02"}}}}`, map[string]string{"sealed": "veth9"})
	if d := Translate(loadNets(t), []Container{sealed}, Defaults{}); len(d.Endpoints) != 1 || len(d.Ports) != 0 {
		t.Errorf("a container on an internal network: endpoints %v, ports %v; want its endpoint and no port", d.Endpoints, d.Ports)
	}
	if d.Ignored["network mode host"] != 1 {
		t.Errorf("host-mode container not counted: %v", d.Ignored)
	}
	missing := ctr(t, strings.Replace(dbJSON, `"Links":["/web:/db/web"]`, `"Links":null`, 1), map[string]string{"bridge": "veth2"})
	d = Translate(loadNets(t), []Container{missing}, Defaults{})
	if len(d.Problems) != 1 || !strings.Contains(d.Problems[0], "backend") || !strings.Contains(d.Problems[0], "veth") {
		t.Errorf("an interface without its host veth: want one problem naming it, got %v", d.Problems)
	}
	if _, ok := d.Endpoints["f27ef36a603a.bridge"]; !ok {
		t.Errorf("the interface that was found must still be managed")
	}
}

func TestPlan(t *testing.T) {
	web := ctr(t, webJSON, map[string]string{"bridge": "veth1"})
	db := ctr(t, dbJSON, map[string]string{"bridge": "veth2", "backend": "veth3"})
	want := Translate(loadNets(t), []Container{web, db}, Defaults{ICC: true, Masquerade: true})
	r := model.NewResolved()
	apply := func(ops []model.Op) {
		t.Helper()
		for _, op := range ops {
			if _, err := r.Do(op); err != nil {
				t.Fatalf("%s %s: %v", op.Kind, op.Target(), err)
			}
		}
	}
	// An API network of the operator's, which the plan must leave alone.
	if _, err := r.PutNetwork(model.Network{Name: "mine", Bridge: "pc9", Subnet: "10.99.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	ops, skipped := Plan(r.State(), want)
	if len(skipped) > 0 {
		t.Fatalf("skipped: %v", skipped)
	}
	apply(ops)
	if again, _ := Plan(r.State(), want); len(again) != 0 {
		t.Errorf("a second plan of the same state changes %d objects: %v", len(again), again)
	}
	// The operator turns icc off on docker0: the next syncs keep it.
	n := r.Networks["bridge"].Spec
	icc := false
	n.ICC, n.ICCOverride = &icc, true
	apply([]model.Op{{Kind: "network", Network: &n}})
	want = Translate(loadNets(t), []Container{web, db}, Defaults{ICC: true, Masquerade: true})
	if ops, _ := Plan(r.State(), want); len(ops) != 0 {
		t.Errorf("icc override undone by the plan: %v", ops)
	}
	// web goes: its endpoint, ports and db's link to it go; db stays.
	want = Translate(loadNets(t), []Container{db}, Defaults{ICC: true, Masquerade: true})
	ops, _ = Plan(r.State(), want)
	apply(ops)
	if _, ok := r.Endpoints["40fb7eaeb3a6.bridge"]; ok || len(r.Ports) != 0 || len(r.Links) != 0 {
		t.Errorf("after web went: endpoints %d ports %d links %d", len(r.Endpoints), len(r.Ports), len(r.Links))
	}
	// Everything goes: Docker's networks too, the operator's stays.
	ops, _ = Plan(r.State(), newDesired())
	apply(ops)
	if len(r.Networks) != 1 || r.Networks["mine"] == nil {
		t.Errorf("networks left: %v", r.Networks)
	}
	// A Docker network whose name the operator took is skipped, not taken.
	_, skipped = Plan(r.State(), &Desired{Networks: map[string]model.Network{"mine": {Name: "mine", Source: model.SourceDocker}}})
	if len(skipped) != 1 {
		t.Errorf("want the taken name reported, got %v", skipped)
	}
}
