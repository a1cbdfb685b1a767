package model

import "testing"

// An external network without a bridge is routed (ptp): two of them
// coexist, neither takes a bridge name, and their endpoints must name the
// host veth the other plugin made.
func TestExternalRoutedNetworks(t *testing.T) {
	r := NewResolved()
	for _, n := range []Network{
		{Name: "ptp-a", Subnet: "10.61.0.0/24", External: true},
		{Name: "ptp-b", Subnet: "10.62.0.0/24", External: true},
	} {
		if _, err := r.PutNetwork(n); err != nil {
			t.Fatalf("PUT external network %s without a bridge: %v", n.Name, err)
		}
		if rn := r.Networks[n.Name]; !rn.Routed() || rn.Bridge != "" {
			t.Errorf("network %s: bridge %q, routed %v; want no bridge, routed", n.Name, rn.Bridge, rn.Routed())
		}
	}
	// Positive control: a plain network still gets its name as bridge, and
	// may take "ptp-a" as a bridge name, which no routed network holds.
	if _, err := r.PutNetwork(Network{Name: "plain", Bridge: "ptp-a", Subnet: "10.63.0.0/24"}); err != nil {
		t.Fatalf("plain network with bridge ptp-a: %v", err)
	}
	if r.Networks["plain"].Routed() {
		t.Error("a plain network reads as routed")
	}
	expectRefusal(t, r, Op{Kind: "endpoint", Endpoint: &Endpoint{ID: "e1", Network: "ptp-a", IP: "10.61.0.5", Netns: "/run/netns/x"}},
		400, "netns", "ptp-a", "host_ifname")
	if _, err := r.PutEndpoint(Endpoint{ID: "e1", Network: "ptp-a", IP: "10.61.0.5", HostIfname: "veth1234", MAC: "02:00:00:00:00:05"}); err != nil {
		t.Fatalf("endpoint with host_ifname on a routed network: %v", err)
	}
	// In use, it cannot stop being external (the agent would take its
	// interfaces over).
	expectRefusal(t, r, Op{Kind: "network", Network: &Network{Name: "ptp-a", Bridge: "br9", Subnet: "10.61.0.0/24"}}, 409, "bridge")
	if _, err := r.PutNetwork(Network{Name: "br", Bridge: "cni9", Subnet: "10.65.0.0/24", External: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutEndpoint(Endpoint{ID: "e2", Network: "br", IP: "10.65.0.5", HostIfname: "veth5678", MAC: "02:00:00:00:00:06"}); err != nil {
		t.Fatal(err)
	}
	expectRefusal(t, r, Op{Kind: "network", Network: &Network{Name: "br", Bridge: "cni9", Subnet: "10.65.0.0/24"}}, 409, "external", "from true to false")
}

// A runtime source's network cannot be external too: the source already
// says whose its interfaces are.
func TestExternalNotWithSource(t *testing.T) {
	expectRefusal(t, NewResolved(), Op{Kind: "network", Network: &Network{Name: "d", Subnet: "10.64.0.0/24", External: true, Source: SourceDocker}},
		400, "external", "docker")
}
