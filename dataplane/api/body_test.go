package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
)

// rawPut sends body as it is, which Client.Do (marshalling a value) cannot,
// and returns the status with the decoded refusal (empty on success).
func rawPut(t *testing.T, sock, path string, body []byte) (int, model.Error) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPut, "http://portcullis"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", path, err)
	}
	defer resp.Body.Close()
	var e model.Error
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("PUT %s: %s: answer is not an error object: %q", path, resp.Status, b)
		}
	}
	return resp.StatusCode, e
}

// expectAbsent checks that a refused PUT created nothing.
func expectAbsent(t *testing.T, c *api.Client, name string) {
	t.Helper()
	if n, err := c.Network(context.Background(), name); model.StatusOf(err) != http.StatusNotFound {
		t.Errorf("network %s after a refused PUT: %+v %v", name, n, err)
	}
}

// A body is one JSON object: what follows it is refused and shown, and
// trailing white space (a newline from curl or echo) is not.
func TestTrailingBytesRefused(t *testing.T) {
	sock := dptest.StartAgent(t, t.TempDir(), &dptest.Recorder{})
	c := api.NewClient(sock)
	obj := `{"name":"n1","bridge":"pcn1","subnet":"172.18.0.0/16"}`
	for _, trail := range []string{` {"name":"n2"}`, `x`, "\n]"} {
		status, e := rawPut(t, sock, "/v1/networks/n1", []byte(obj+trail))
		if status != http.StatusBadRequest || e.Field != "body" || !strings.Contains(e.Msg, strconv.Quote(strings.TrimSpace(trail))) {
			t.Errorf("trailing %q: got %d %s %q, want 400 body naming what trailed", trail, status, e.Field, e.Msg)
		}
		expectAbsent(t, c, "n1")
	}
	if status, e := rawPut(t, sock, "/v1/networks/n1", []byte(obj+"\n \r\n\t")); status != http.StatusOK {
		t.Fatalf("object with trailing white space: %d %s", status, e.Msg)
	}
	if _, err := c.Network(context.Background(), "n1"); err != nil {
		t.Errorf("accepted network not there: %v", err)
	}
}

// A body over the limit is refused with 413 naming the limit; one exactly
// at the limit is read.
func TestBodyLimit(t *testing.T) {
	sock := dptest.StartAgent(t, t.TempDir(), &dptest.Recorder{})
	c := api.NewClient(sock)
	obj := []byte(`{"name":"n1","bridge":"pcn1","subnet":"172.18.0.0/16"}`)
	padded := func(n int) []byte { return append(append([]byte{}, obj...), bytes.Repeat([]byte{' '}, n-len(obj))...) }
	limit := api.MaxBodyBytes
	for _, size := range []int{limit + 1, 10 << 20} {
		status, e := rawPut(t, sock, "/v1/networks/n1", padded(size))
		if status != http.StatusRequestEntityTooLarge || e.Field != "body" || !strings.Contains(e.Msg, "1048576 bytes") {
			t.Errorf("body of %d bytes: got %d %s %q, want 413 body naming the limit of 1048576 bytes", size, status, e.Field, e.Msg)
		}
		expectAbsent(t, c, "n1")
	}
	if status, e := rawPut(t, sock, "/v1/networks/n1", padded(limit)); status != http.StatusOK {
		t.Errorf("body of exactly %d bytes: %d %s", limit, status, e.Msg)
	}
}

// A client that sends its headers and then only part of the body, or
// nothing, is answered 408 and cut off once the body timeout passes; it
// changes nothing. A client that sends the whole body on time is served.
func TestStalledBodyTimesOut(t *testing.T) {
	sock := dptest.StartAgentWith(t, t.TempDir(), &dptest.Recorder{}, func(s *api.Server) { s.BodyTimeout = 300 * time.Millisecond })
	c := api.NewClient(sock)
	body := `{"name":"n1","bridge":"pcn1","subnet":"172.18.0.0/16"}`
	for _, sent := range []string{"", body[:10]} {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		head := "PUT /v1/networks/n1 HTTP/1.1\r\nHost: portcullis\r\nContent-Type: application/json\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		if _, err := io.WriteString(conn, head+sent); err != nil {
			t.Fatal(err)
		}
		// Far longer than the body timeout: without one, nothing comes.
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("sent %d of %d body bytes, then stalled: no answer: %v", len(sent), len(body), err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "body") {
			t.Errorf("stalled body: got %s %s, want 408 about the body", resp.Status, b)
		}
		if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("connection of a stalled body left open: %v", err)
		}
		expectAbsent(t, c, "n1")
	}
	if _, err := c.PutNetwork(context.Background(), model.Network{Name: "n1", Bridge: "pcn1", Subnet: "172.18.0.0/16"}); err != nil {
		t.Errorf("whole body after stalled ones: %v", err)
	}
}

// The body's deadline ends with the body: a change that takes longer than
// the body timeout still completes, its context not cancelled by it.
func TestBodyTimeoutSparesLongChanges(t *testing.T) {
	be := &dptest.Recorder{Delay: time.Second}
	sock := dptest.StartAgentWith(t, t.TempDir(), be, func(s *api.Server) { s.BodyTimeout = 100 * time.Millisecond })
	c := api.NewClient(sock)
	if _, err := c.PutNetwork(context.Background(), model.Network{Name: "n1", Bridge: "pcn1", Subnet: "172.18.0.0/16"}); err != nil {
		t.Fatalf("change taking longer than the body timeout: %v", err)
	}
}
