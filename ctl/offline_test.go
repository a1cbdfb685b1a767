package ctl

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
)

// run runs pcctl in-process with PORTCULLIS_* from env and returns stdout
// and stderr.
func run(env map[string]string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	return out.String(), errb.String(), err
}

// staleSocket leaves a socket file nobody listens on (an agent that was
// killed): connecting is refused.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		t.Fatal("the stale socket answers")
	}
}

// The desired state lists read from the state directory with the agent
// down are exactly the agent's, in JSON and as tables, whether the socket
// is missing or refuses.
func TestOfflineStateLists(t *testing.T) {
	dir := t.TempDir()
	sock := dptest.StartAgent(t, dir, &dptest.Recorder{})
	if err := putSetup(sock); err != nil {
		t.Fatal(err)
	}
	cl := api.NewClient(sock)
	ctx := context.Background()
	if _, err := cl.PutNetwork(ctx, model.Network{Name: "other", Bridge: "pc1", Subnet: "172.18.0.0/16", Subnet6: "2001:db8:18::/64"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutPort(ctx, model.PortMapping{ID: "web80", Endpoint: "web", Proto: "udp", HostIP: "127.0.0.1", HostPort: 8080, Port: 80}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutPort(ctx, model.PortMapping{ID: "range", Endpoint: "db", Proto: "tcp", HostPortRange: "8000-8099", PortRange: "9000-9099"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutLink(ctx, model.Link{Parent: "web", Child: "db", Alias: "database"}); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteNetwork(ctx, "other"); err != nil { // a journalled delete to replay
		t.Fatal(err)
	}
	up := map[string]string{"PORTCULLIS_SOCKET": sock}
	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	// The agent runs on and holds its directory: the files as it leaves
	// them are read from a copy.
	left := leftBehind(t, filepath.Join(dir, "state"))
	downs := map[string]map[string]string{
		"missing socket": {"PORTCULLIS_SOCKET": filepath.Join(dir, "none.sock"), "PORTCULLIS_STATE_DIR": left},
		"refused socket": {"PORTCULLIS_SOCKET": stale, "PORTCULLIS_STATE_DIR": left},
	}
	for _, kind := range []string{"networks", "endpoints", "ports", "links"} {
		for _, format := range []string{"json", "table"} {
			want, stderr, err := run(up, "-o", format, kind)
			if err != nil || stderr != "" {
				t.Fatalf("%s with the agent up: %v %s", kind, err, stderr)
			}
			if strings.Count(want, "\n") < 2 {
				t.Fatalf("%s: too little to compare:\n%s", kind, want)
			}
			for name, env := range downs {
				got, stderr, err := run(env, "-o", format, kind)
				if err != nil {
					t.Fatalf("%s, %s: %v", kind, name, err)
				}
				if got != want {
					t.Errorf("%s -o %s, %s:\n%s\nwith the agent up:\n%s", kind, format, name, got, want)
				}
				wantErr := "pcctl: portcullisd not answering on " + env["PORTCULLIS_SOCKET"] + "; reading the state in " + env["PORTCULLIS_STATE_DIR"] + " directly (read-only)\n"
				if stderr != wantErr {
					t.Errorf("%s, %s: stderr %q, want %q", kind, name, stderr, wantErr)
				}
			}
		}
	}
	// -state-dir overrides the environment; a wrong one is an error, not an
	// empty list.
	_, _, err := run(downs["missing socket"], "-state-dir", filepath.Join(dir, "nowhere"), "ports")
	if err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("ports from a missing state directory: %v", err)
	}
}

// An agent that answers with an error is not a missing agent: the error is
// the answer, nothing is read directly.
func TestOfflineNotOnHTTPError(t *testing.T) {
	sock := dptest.StartAgent(t, t.TempDir(), &dptest.Recorder{})
	for _, cmd := range []string{"flows", "drops"} {
		_, stderr, err := run(map[string]string{"PORTCULLIS_SOCKET": sock}, cmd)
		if err == nil || !strings.Contains(err.Error(), "recorder does not") {
			t.Errorf("%s from a backend without it: %v", cmd, err)
		}
		if stderr != "" {
			t.Errorf("%s fell back: %s", cmd, stderr)
		}
	}
}

// Commands that change state say that the agent is not running; they
// touch nothing.
func TestVerbsNeedAgent(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	for _, sock := range []string{filepath.Join(dir, "none.sock"), stale} {
		env := map[string]string{"PORTCULLIS_SOCKET": sock, "PORTCULLIS_STATE_DIR": filepath.Join(dir, "state")}
		for _, args := range [][]string{
			{"publish", "p", "web", "8080:80"},
			{"unpublish", "p"},
			{"link", "web", "db", "database"},
			{"unlink", "web", "database"},
			{"flush-flows"},
			{"flush-flows", "-proto", "tcp"},
		} {
			out, stderr, err := run(env, args...)
			want := "portcullisd is not running (no answer on " + sock + "): " + args[0] + " changes the dataplane and needs the agent"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("pcctl %v with the agent down: %v, want %q", args, err, want)
			}
			if out != "" || stderr != "" {
				t.Errorf("pcctl %v printed %q, %q", args, out, stderr)
			}
		}
	}
	// A bad filter is refused as the agent refuses it, before anything is
	// read.
	_, _, err := run(map[string]string{"PORTCULLIS_SOCKET": filepath.Join(dir, "none.sock")}, "flows", "-proto", "gre")
	if err == nil || !strings.Contains(err.Error(), `proto "gre": use tcp, udp, sctp, icmp or icmpv6`) {
		t.Errorf("flows -proto gre with the agent down: %v", err)
	}
}

// leftBehind copies the files of the state directory dir, as an agent
// killed now leaves them (its lock released), and returns the copy.
func leftBehind(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	if err := os.CopyFS(out, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return out
}

// An agent that holds the state directory but does not answer on the
// socket pcctl was given (still starting, or another socket) is named;
// its files are not read under it. Once it is gone they are.
func TestOfflineAgentHoldsStateDir(t *testing.T) {
	dir := t.TempDir()
	sock := dptest.StartAgent(t, dir, &dptest.Recorder{})
	if err := putSetup(sock); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	env := map[string]string{"PORTCULLIS_SOCKET": filepath.Join(dir, "none.sock"), "PORTCULLIS_STATE_DIR": state}
	out, _, err := run(env, "networks")
	want := fmt.Sprintf("portcullisd (pid %d) holds %s", os.Getpid(), state)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "does not answer on "+env["PORTCULLIS_SOCKET"]) {
		t.Errorf("networks from a directory the agent holds: %v (printed %q), want %q", err, out, want)
	}
	if out != "" {
		t.Errorf("printed %q", out)
	}
	// Positive control: the same files, no longer held, list the network.
	env["PORTCULLIS_STATE_DIR"] = leftBehind(t, state)
	out, _, err = run(env, "networks")
	if err != nil || !strings.Contains(out, "172.17.0.0/16") {
		t.Errorf("networks from the files it leaves: %v\n%s", err, out)
	}
}

// A torn last journal line is left out of what pcctl reads, and said so.
func TestOfflineTornJournal(t *testing.T) {
	dir := t.TempDir()
	sock := dptest.StartAgent(t, dir, &dptest.Recorder{})
	if err := putSetup(sock); err != nil {
		t.Fatal(err)
	}
	want, _, err := run(map[string]string{"PORTCULLIS_SOCKET": sock}, "networks")
	if err != nil {
		t.Fatal(err)
	}
	left := leftBehind(t, filepath.Join(dir, "state"))
	f, err := os.OpenFile(filepath.Join(left, "journal.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":99,"kind":"netw`)
	f.Close()
	got, stderr, err := run(map[string]string{"PORTCULLIS_SOCKET": filepath.Join(dir, "none.sock"), "PORTCULLIS_STATE_DIR": left}, "networks")
	if err != nil || got != want {
		t.Errorf("networks with a torn journal: %v\n%s\nwant\n%s", err, got, want)
	}
	if !strings.Contains(stderr, "journal.jsonl line") || !strings.Contains(stderr, `"{\"seq\":99,\"kind\":\"netw"`) {
		t.Errorf("stderr does not name the torn line: %q", stderr)
	}
}
