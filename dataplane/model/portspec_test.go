package model

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// givenPorts are mappings in every form the API takes: the canonical one
// and the forms a resolved mapping cannot rebuild by itself.
var givenPorts = []PortMapping{
	{ID: "plain", Endpoint: "web", Proto: "tcp", HostPort: 8081, Port: 80},
	{ID: "caps", Endpoint: "web", Proto: "UDP", HostPort: 8082, Port: 80},
	{ID: "any4", Endpoint: "web", Proto: "tcp", HostIP: "0.0.0.0", HostPort: 8083, Port: 80},
	{ID: "any6", Endpoint: "db", Proto: "tcp", HostIP: "::", HostPort: 8084, Port: 80},
	{ID: "v6caps", Endpoint: "db", Proto: "tcp", HostIP: "FD00::1", HostPort: 8085, Port: 80},
	{ID: "host", Endpoint: "web", Proto: "sctp", HostIP: "192.0.2.1", HostPort: 8086, Port: 80, Source: SourceDocker},
	{ID: "same", Endpoint: "web", Proto: "tcp", HostPort: 8087},
	{ID: "range", Endpoint: "web", Proto: "tcp", HostPortRange: "9000-9009", PortRange: "9000-9009"},
	{ID: "spaced", Endpoint: "web", Proto: "udp", HostPortRange: " 9100 - 9109", PortRange: "100-109"},
	{ID: "one", Endpoint: "web", Proto: "tcp", HostPortRange: "9200-9200", Port: 80},
}

// A resolved mapping gives back exactly what it was given, whether it
// keeps a copy (a form its fields do not rebuild) or not.
func TestPortSpecAsGiven(t *testing.T) {
	r := base(t)
	kept := 0
	for _, p := range givenPorts {
		must(t)(r.PutPort(p))
		rp := r.Ports[p.ID]
		if got := rp.Spec(); got != p {
			t.Errorf("%s: Spec() = %+v, want %+v", p.ID, got, p)
		}
		if rp.given != nil {
			kept++
		}
	}
	// plain, host and range rebuild themselves; the seven others do not.
	if kept != 7 {
		t.Errorf("%d mappings keep a copy of what they were given, want 7", kept)
	}
	// An endpoint re-put re-binds its mappings: still as given.
	must(t)(r.PutEndpoint(r.Endpoints["web"].Spec))
	for _, p := range givenPorts {
		if got := r.Ports[p.ID].Spec(); got != p {
			t.Errorf("%s after the endpoint was re-put: %+v, want %+v", p.ID, got, p)
		}
	}
}

// A frozen state writes the JSON of the State it stands for, and keeps
// standing for that moment while the state changes on.
func TestFrozenWritesState(t *testing.T) {
	r := base(t)
	for _, p := range givenPorts {
		must(t)(r.PutPort(p))
	}
	must(t)(r.PutLink(Link{Parent: "web", Alias: "db", Child: "db"}))
	want := r.State()
	f := r.Freeze()
	must(t)(r.DeletePort("plain"))
	must(t)(r.PutPort(PortMapping{ID: "later", Endpoint: "web", Proto: "tcp", HostPort: 7000, Port: 70}))

	var buf bytes.Buffer
	buf.WriteString("{")
	if err := f.WriteStateJSON(&buf); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("}")
	got := NewState()
	if err := json.Unmarshal(buf.Bytes(), got); err != nil {
		t.Fatalf("frozen state is not JSON: %v\n%s", err, buf.Bytes())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("frozen state reads back as\n%+v\nwant\n%+v", got, want)
	}
	// The same bytes as the State itself writes (keys in order).
	var direct bytes.Buffer
	direct.WriteString("{")
	if err := want.WriteStateJSON(&direct); err != nil {
		t.Fatal(err)
	}
	direct.WriteString("}")
	if !bytes.Equal(buf.Bytes(), direct.Bytes()) {
		t.Errorf("frozen JSON\n%s\ndiffers from the State's\n%s", buf.Bytes(), direct.Bytes())
	}
}

// One host port published on several host addresses: each mapping holds
// its own, whichever of them goes first.
func TestHostPortOnSeveralAddresses(t *testing.T) {
	r := base(t)
	on := func(id, addr string) PortMapping {
		return PortMapping{ID: id, Endpoint: "web", Proto: "tcp", HostIP: addr, HostPort: 9090, Port: 80}
	}
	must(t)(r.PutPort(on("a", "192.0.2.1")))
	must(t)(r.PutPort(on("b", "192.0.2.2")))
	must(t)(r.PutPort(on("c", "192.0.2.3")))
	for _, gone := range []string{"a", "c"} {
		must(t)(r.DeletePort(gone))
		for _, held := range []struct{ addr, by string }{{"192.0.2.2", "b"}} {
			_, err := r.PutPort(on("x", held.addr))
			if err == nil || !strings.Contains(err.Error(), `"`+held.by+`"`) {
				t.Errorf("after %s went, 9090 on %s: %v, want refused naming %s", gone, held.addr, err, held.by)
			}
		}
		// The address that went is free again (positive control).
		addr := map[string]string{"a": "192.0.2.1", "c": "192.0.2.3"}[gone]
		must(t)(r.PutPort(on("x"+gone, addr)))
	}
	// A wildcard mapping on that port collides with every one of them.
	if _, err := r.PutPort(on("any", "")); err == nil {
		t.Error("a wildcard on 9090 was accepted beside mappings on host addresses")
	}
}
