package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
)

// A client that asks for every port mapping and then does not read the
// answer holds its own connection, not the desired state: a change made
// meanwhile goes through, and the slow client still gets the whole list
// as it was when it asked.
func TestSlowReaderDoesNotBlockChanges(t *testing.T) {
	ctx := context.Background()
	sock := dptest.StartAgent(t, t.TempDir(), &dptest.Recorder{})
	c := api.NewClient(sock)
	if _, err := c.PutNetwork(ctx, model.Network{Name: "n1", Bridge: "pcn1", Subnet: "172.18.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	ep := "endpoint-of-a-container-with-a-name-as-long-as-a-docker-id"
	if _, err := c.PutEndpoint(ctx, model.Endpoint{ID: ep, Network: "n1", IP: "172.18.0.2", Netns: "/run/netns/web"}); err != nil {
		t.Fatal(err)
	}
	// Enough mappings, with long names, that the answer (over 200 bytes
	// each) is more than a unix socket buffers (212992 bytes by default),
	// so the agent's write blocks.
	const n = 2500
	for i := range n {
		id := fmt.Sprintf("published-port-of-a-long-named-service-%05d", i)
		if _, err := c.PutPort(ctx, model.PortMapping{ID: id, Endpoint: ep, Proto: "udp", HostPort: 10000 + i, Port: 53}); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /v1/ports HTTP/1.1\r\nHost: portcullis\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The status line shows the agent has taken the request and is writing
	// the answer; the rest stays unread for now.
	br := bufio.NewReaderSize(conn, 64)
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("slow GET: %q %v", line, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.PutPort(ctx, model.PortMapping{ID: "late", Endpoint: ep, Proto: "tcp", HostPort: 80, Port: 80})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("change during a slow read: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a change waited on a client that does not read its answer")
	}
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	// Put back the status line read by hand above.
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader("HTTP/1.1 200 OK\r\n"), br)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ports []model.PortMapping
	if err := json.NewDecoder(resp.Body).Decode(&ports); err != nil {
		t.Fatalf("slow reader's answer: %v", err)
	}
	if len(ports) != n {
		t.Errorf("slow reader got %d mappings, want the %d there when it asked", len(ports), n)
	}
}
