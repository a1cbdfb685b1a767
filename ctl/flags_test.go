package ctl

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
)

// The global flags work before the command, after it and among its
// arguments; "--" ends them.
func TestFlagsAnywhere(t *testing.T) {
	be := &dptest.Recorder{}
	sock := dptest.StartAgent(t, t.TempDir(), be)
	if err := putSetup(sock); err != nil {
		t.Fatal(err)
	}
	nowhere := filepath.Join(t.TempDir(), "none.sock")
	// The publish's answer in JSON, with -o and -socket after the
	// command's arguments: the environment's socket leads nowhere.
	out, _, err := run(map[string]string{"PORTCULLIS_SOCKET": nowhere}, "publish", "web80", "web", "8080:80", "-o", "json", "-socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	var p model.PortMapping
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.ID != "web80" || p.HostPort != 8080 {
		t.Errorf("publish ... -o json: %v %+v\n%s", err, p, out)
	}
	if be.Applied.Ports["web80"].Port != 80 {
		t.Errorf("publish did not reach the backend: %+v", be.Applied.Ports)
	}
	before, err := pcctl(t, sock, "-o", "json", "ports")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"ports", "-o", "json"}, {"ports", "-o=json"}, {"ports", "web80", "-o", "json"}, {"-o", "table", "ports", "-o", "json"}} {
		if got, err := pcctl(t, sock, args...); err != nil || got != before {
			t.Errorf("pcctl %q: %v\n%s\nwant:\n%s", args, err, got, before)
		}
	}
	// A command's own flags and the global ones mix, in any order.
	if out, err := pcctl(t, sock, "unpublish", "-o", "json", "web80"); err != nil || out != "" {
		t.Errorf("unpublish -o json web80: %v %q", err, out)
	}
	if _, ok := be.Applied.Ports["web80"]; ok {
		t.Error("unpublish -o json web80 left the mapping")
	}
	// After "--", "-o" is an argument: a port mapping nobody has.
	if _, err := pcctl(t, sock, "ports", "--", "-o"); err == nil || !strings.Contains(err.Error(), `no port with id "-o"`) {
		t.Errorf("ports -- -o: %v", err)
	}
	for _, bad := range [][]string{{"ports", "-o", "yaml"}, {"ports", "-frobnicate"}, {"status", "extra"}, {"drops", "-o"}} {
		if _, err := pcctl(t, sock, bad...); err == nil {
			t.Errorf("pcctl %q: no error", bad)
		}
	}
	if _, err := pcctl(t, sock, "ports", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), `-o "yaml": use table or json`) {
		t.Errorf("ports -o yaml: %v", err)
	}
}

// Empty lists are [] in JSON, from the agent and from the state directory.
func TestEmptyListsJSON(t *testing.T) {
	dir := t.TempDir()
	sock := dptest.StartAgent(t, dir, &dptest.Recorder{})
	env := map[string]string{"PORTCULLIS_SOCKET": sock}
	for _, cmd := range []string{"networks", "endpoints", "ports", "links"} {
		out, _, err := run(env, cmd, "-o", "json")
		if err != nil || strings.TrimSpace(out) != "[]" {
			t.Errorf("%s -o json, agent up: %v %q", cmd, err, out)
		}
	}
	// No agent: the same, read from an empty state directory.
	down := map[string]string{"PORTCULLIS_SOCKET": filepath.Join(dir, "none.sock"), "PORTCULLIS_STATE_DIR": t.TempDir()}
	for _, cmd := range []string{"networks", "endpoints", "ports", "links"} {
		out, stderr, err := run(down, cmd, "-o", "json")
		if err != nil || strings.TrimSpace(out) != "[]" || !strings.Contains(stderr, "not answering") {
			t.Errorf("%s -o json, agent down: %v %q (stderr %q)", cmd, err, out, stderr)
		}
	}
	// Selected by ID, the list keeps what exists and refuses a typo.
	if err := putSetup(sock); err != nil {
		t.Fatal(err)
	}
	var eps []model.Endpoint
	out, _, err := run(env, "endpoints", "db", "-o", "json")
	if err := json.Unmarshal([]byte(out), &eps); err != nil || len(eps) != 1 || eps[0].ID != "db" {
		t.Errorf("endpoints db: %v %+v", err, eps)
	}
	if _, _, err = run(env, "endpoints", "db", "dbb"); err == nil || !strings.Contains(err.Error(), `no endpoint with id "dbb"`) {
		t.Errorf("endpoints db dbb: %v", err)
	}
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"help"}, []string{"usage: pcctl [flags] COMMAND", "  maps ", "flags (before or after the command):", "-o string"}},
		{[]string{"-h"}, []string{"usage: pcctl [flags] COMMAND", "  unlink "}},
		{[]string{"help", "maps"}, []string{"usage: pcctl maps", "-dump string", "-limit int", "global flags"}},
		{[]string{"maps", "--help"}, []string{"usage: pcctl maps", "-dump string"}},
		{[]string{"publish", "-h"}, []string{"usage: pcctl publish ID ENDPOINT"}},
		{[]string{"help", "help"}, []string{"usage: pcctl help [COMMAND]"}},
	} {
		out, _, err := run(nil, tc.args...)
		if err != nil {
			t.Errorf("pcctl %q: %v", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("pcctl %q lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
	if out, _, err := run(nil, "help", "frobnicate"); err == nil || out != "" || !strings.Contains(err.Error(), `help "frobnicate": no such command`) {
		t.Errorf("help frobnicate: %v %q", err, out)
	}
	// publish has no flags of its own: no empty flags section.
	if out, _, _ := run(nil, "help", "publish"); strings.Contains(out, "\nflags:") {
		t.Errorf("help publish:\n%s", out)
	}
}
