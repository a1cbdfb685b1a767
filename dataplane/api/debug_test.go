package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
)

// The debug endpoints answer with the agent's memory figures, which grow
// with what it holds, and its heap profile (gzipped protobuf, as go tool
// pprof reads it).
func TestDebugMemory(t *testing.T) {
	ctx := context.Background()
	socket := dptest.StartAgent(t, t.TempDir(), &dptest.Recorder{})
	c := api.NewClient(socket)
	heap := func() uint64 {
		var m map[string]uint64
		if err := c.Do(ctx, http.MethodGet, "/debug/memory?gc=1", nil, &m); err != nil {
			t.Fatal(err)
		}
		return m["heap_alloc"]
	}
	before := heap()
	if _, err := c.PutNetwork(ctx, model.Network{Name: "n", Bridge: "pc0", Subnet: "172.17.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutEndpoint(ctx, model.Endpoint{ID: "c", Network: "n", IP: "172.17.0.2", Netns: "/run/netns/c"}); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		p := model.PortMapping{ID: fmt.Sprintf("p%d", i), Endpoint: "c", Proto: "tcp", HostPort: 10000 + i, Port: 80}
		if _, err := c.PutPort(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if after := heap(); before == 0 || after <= before {
		t.Errorf("heap_alloc %d with no mapping, %d with 2,000: want more with them", before, after)
	}

	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	resp, err := hc.Get("http://portcullis/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /debug/pprof/heap: %d %v", resp.StatusCode, err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Errorf("heap profile starts %x, want gzip (pprof's protobuf)", b[:min(4, len(b))])
	}
}
