package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
)

func pcctl(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		if k == "PORTCULLIS_SOCKET" {
			return sock
		}
		return ""
	}}
	err := Run(context.Background(), args, env)
	return out.String(), err
}

// pcctlOK is pcctl on sock for commands that must succeed: it returns
// stdout, and fails the test on an error.
func pcctlOK(t *testing.T, sock string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		out, err := pcctl(t, sock, args...)
		if err != nil {
			t.Fatalf("pcctl %v: %v", args, err)
		}
		return out
	}
}

func TestCommands(t *testing.T) {
	be := &dptest.Recorder{}
	sock := dptest.StartAgent(t, t.TempDir(), be)
	c := pcctlOK(t, sock)
	if err := putSetup(sock); err != nil {
		t.Fatal(err)
	}
	c("publish", "web80", "web", "127.0.0.1:8080:80/udp")
	if p := be.Applied.Ports["web80"]; p.HostIP != "127.0.0.1" || p.HostPort != 8080 || p.Port != 80 || p.Proto != "udp" {
		t.Errorf("publish reached the backend as %+v", p)
	}
	c("publish", "range", "web", "8000-8099:9000-9099")
	if p := be.Applied.Ports["range"]; p.HostPortRange != "8000-8099" || p.PortRange != "9000-9099" || p.Proto != "tcp" {
		t.Errorf("range publish reached the backend as %+v", p)
	}
	table := c("ports")
	if !strings.Contains(table, "web80") || !strings.Contains(table, "127.0.0.1") || !strings.HasPrefix(table, "ID") {
		t.Errorf("ports table:\n%s", table)
	}
	var ports []model.PortMapping
	if err := json.Unmarshal([]byte(c("-o", "json", "ports")), &ports); err != nil || len(ports) != 2 {
		t.Errorf("ports json: %v %v", ports, err)
	}
	out := c("link", "web", "db", "database")
	if !strings.Contains(out, "DATABASE_PORT=tcp://172.17.0.5:5432") || !strings.Contains(out, "172.17.0.5 database") {
		t.Errorf("link output:\n%s", out)
	}
	c("unlink", "web", "database")
	c("unpublish", "web80")
	if _, ok := be.Applied.Ports["web80"]; ok {
		t.Error("unpublish did not reach the backend")
	}
	if out := c("status"); !strings.Contains(out, "backend:") || !strings.Contains(out, "recorder") {
		t.Errorf("status:\n%s", out)
	}
	// Refusals come back with the agent's message.
	if _, err := pcctl(t, sock, "publish", "x", "web", "8000-8099:9000-9099"); err == nil || !strings.Contains(err.Error(), "already published by port mapping \"range\"") {
		t.Errorf("collision: %v", err)
	}
	for _, bad := range [][]string{{"frobnicate"}, {"publish", "x"}, {"publish", "x", "web", "80"}, {"-o", "yaml", "ports"}} {
		if _, err := pcctl(t, sock, bad...); err == nil {
			t.Errorf("pcctl %v: no error", bad)
		}
	}
	if out := c("publish", "--help"); !strings.Contains(out, "usage: pcctl publish") {
		t.Errorf("help: %s", out)
	}
}

func putSetup(sock string) error {
	ctx := context.Background()
	cl := api.NewClient(sock)
	if _, err := cl.PutNetwork(ctx, model.Network{Name: "default", Bridge: "pc0", Subnet: "172.17.0.0/16"}); err != nil {
		return err
	}
	for _, e := range []model.Endpoint{
		{ID: "web", Network: "default", IP: "172.17.0.2", Netns: "/run/netns/web"},
		{ID: "db", Network: "default", IP: "172.17.0.5", Netns: "/run/netns/db", Exposed: []model.PortProto{{Port: 5432, Proto: "tcp"}}},
	} {
		if _, err := cl.PutEndpoint(ctx, e); err != nil {
			return err
		}
	}
	return nil
}
