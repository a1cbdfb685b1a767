package model

import (
	"net/http"
	"strings"
	"testing"
)

// TestInternalNetwork: nothing is published on an internal network, and a
// network with published ports does not become internal.
func TestInternalNetwork(t *testing.T) {
	r := NewResolved()
	must := func(_ *Delta, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.PutNetwork(Network{Name: "sealed", Subnet: "10.1.0.0/24", Internal: true}))
	must(r.PutNetwork(Network{Name: "open", Subnet: "10.2.0.0/24"}))
	must(r.PutEndpoint(Endpoint{ID: "s", Network: "sealed", IP: "10.1.0.2", Netns: "/run/netns/s"}))
	must(r.PutEndpoint(Endpoint{ID: "o", Network: "open", IP: "10.2.0.2", Netns: "/run/netns/o"}))
	if !r.Networks["sealed"].Internal {
		t.Fatal("internal not resolved")
	}
	_, err := r.PutPort(PortMapping{ID: "p", Endpoint: "s", Proto: "tcp", HostPort: 8080, Port: 80})
	if e, ok := err.(*Error); !ok || e.Status != http.StatusBadRequest || e.Field != "endpoint" || !strings.Contains(e.Msg, "internal") {
		t.Errorf("publish on an internal network: %v, want 400 on endpoint naming internal", err)
	}
	must(r.PutPort(PortMapping{ID: "p", Endpoint: "o", Proto: "tcp", HostPort: 8080, Port: 80}))
	_, err = r.PutNetwork(Network{Name: "open", Subnet: "10.2.0.0/24", Internal: true})
	if e, ok := err.(*Error); !ok || e.Status != http.StatusConflict || e.Field != "internal" || !strings.Contains(e.Msg, `"p"`) {
		t.Errorf("make a network with a mapping internal: %v, want 409 on internal naming the mapping", err)
	}
	if r.Networks["open"].Internal {
		t.Error("the refused change was applied")
	}
	must(r.PutNetwork(Network{Name: "sealed", Subnet: "10.1.0.0/24"})) // and back: no longer internal
	must(r.PutPort(PortMapping{ID: "q", Endpoint: "s", Proto: "tcp", HostPort: 8081, Port: 80}))
}
