package nstest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// fakeAgent stands in for portcullisd in TestAgentLifecycle: it serves
// /v1/status on --socket, reporting whether --bpffs sits on a bpffs and
// which named namespace it runs in.
func fakeAgent(args []string) int {
	uninstall := len(args) > 0 && args[0] == "uninstall"
	if uninstall {
		args = args[1:]
	}
	fs := flag.NewFlagSet("fake", flag.ContinueOnError)
	sock := fs.String("socket", "", "")
	fs.String("state-dir", "", "")
	backend := fs.String("backend", "", "")
	bpffs := fs.String("bpffs", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if uninstall {
		fmt.Println("uninstalled")
		return 0
	}
	os.MkdirAll(*bpffs, 0o700)
	var st unix.Statfs_t
	onBPF := unix.Statfs(*bpffs, &st) == nil && st.Type == unix.BPF_FS_MAGIC
	ns := ""
	if self, err := os.Stat("/proc/self/ns/net"); err == nil {
		ents, _ := os.ReadDir(NetnsDir)
		for _, e := range ents {
			if fi, err := os.Stat(NetnsDir + "/" + e.Name()); err == nil && os.SameFile(fi, self) {
				ns = e.Name()
			}
		}
	}
	os.Remove(*sock)
	l, err := net.Listen("unix", *sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"backend": *backend, "bpffs": onBPF, "netns": ns})
	})
	srv := &http.Server{Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go srv.Serve(l)
	fmt.Fprintln(os.Stderr, "fake agent serving", *sock, strings.Join(args, " "))
	<-ctx.Done()
	srv.Close()
	return 0
}
