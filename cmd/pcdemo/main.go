// Command pcdemo replays Docker's default-bridge walkthrough against
// Portcullis in a sandbox of network namespaces (make demo).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/portcullis/portcullis/internal/demo"
	"github.com/portcullis/portcullis/internal/nstest"
)

func main() {
	os.Exit(run())
}

func run() int {
	backend := flag.String("backend", "auto", "backend for the agent: auto, ebpf or nftables")
	agent := flag.String("agent", "", "portcullisd binary (default: the one next to pcdemo)")
	withDocker := flag.Bool("docker", false, "replay the walkthrough with a real Docker engine (dockerd with its iptables off, portcullisd --docker) instead of the API")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "pcdemo: run as root: it creates network namespaces")
		return 1
	}
	bin := *agent
	if bin == "" {
		self, err := os.Executable()
		if err == nil {
			bin = filepath.Join(filepath.Dir(self), "portcullisd")
		}
	}
	tb := nstest.NewStandalone()
	replay := demo.Run
	if *withDocker {
		replay = demo.RunDocker
	}
	failed := replay(context.Background(), tb, demo.Options{Binary: bin, Backend: *backend, Out: os.Stdout})
	tb.Close()
	fmt.Println("sandbox removed")
	if failed > 0 || tb.Failed() {
		return 1
	}
	return 0
}
