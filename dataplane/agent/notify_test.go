package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// A real agent, started as systemd starts a Type=notify unit: it says
// READY=1 on $NOTIFY_SOCKET once it has synced and serves, answers
// /healthz on its socket and its metrics listener, exports build_info, and
// says STOPPING=1 on its way out.
func TestAgentNotifiesSystemd(t *testing.T) {
	for _, backend := range []string{"ebpf", "nftables"} {
		t.Run(backend, func(t *testing.T) { testNotify(t, backend) })
	}
}

func testNotify(t *testing.T, backend string) {
	topo := nstest.NewTopology(t, nstest.Options{})
	sockPath := filepath.Join(t.TempDir(), "notify")
	notifySock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notifySock.Close()
	t.Setenv("NOTIFY_SOCKET", sockPath) // the agent inherits it
	const metrics = "127.0.0.1:9642"    // in the node's namespace
	ag := topo.StartAgent(nstest.AgentOptions{Backend: backend, Args: []string{"--metrics-addr", metrics}})

	msg := readNotify(t, notifySock)
	if !strings.Contains(msg, "READY=1") || !strings.Contains(msg, "backend "+backend) {
		t.Errorf("notification %q, want READY=1 and the backend", msg)
	}
	// Ready means synced: the agent has done its full sync and says so.
	st, err := ag.Status()
	if err != nil {
		t.Fatal(err)
	}
	if rs, _ := st["reconciler"].(map[string]any); rs["full_syncs"] != 1.0 {
		t.Errorf("at READY=1 the reconciler reports %v", st["reconciler"])
	}
	if code, body, err := ag.Get("/healthz"); err != nil || code != http.StatusOK || string(body) != "ok" {
		t.Errorf("/healthz on the socket: %d %q %v", code, body, err)
	}
	if code, body := getIn(t, topo.Node, metrics, "/healthz"); code != http.StatusOK || body != "ok" {
		t.Errorf("/healthz on the metrics listener: %d %q", code, body)
	}
	_, body := getIn(t, topo.Node, metrics, "/metrics")
	info := regexp.MustCompile(`(?m)^portcullis_build_info\{backend="([^"]*)",goversion="([^"]*)",version="([^"]+)"\} 1$`).FindStringSubmatch(body)
	if info == nil || info[1] != backend || info[2] != runtime.Version() {
		t.Errorf("build_info %q (want backend %s, %s) in:\n%s", info, backend, runtime.Version(), grep(body, "build_info"))
	}
	if err := ag.Stop(); err != nil {
		t.Fatal(err)
	}
	if msg := readNotify(t, notifySock); msg != "STOPPING=1" {
		t.Errorf("on SIGTERM the agent said %q, want STOPPING=1", msg)
	}
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification on NOTIFY_SOCKET: %v", err)
	}
	return string(buf[:n])
}

// getIn sends GET path to addr from inside ns and returns status and body.
// The connection is made on the namespace's thread; the request goes over
// it from here.
func getIn(t *testing.T, ns *nstest.NS, addr, path string) (int, string) {
	t.Helper()
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connect to %s in %s: %v", addr, ns.Name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func grep(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
