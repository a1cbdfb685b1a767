package docker

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/nstest"
)

// TestIPTablesInUse: dockerd's chains are found in either iptables flavour,
// and Docker mode refuses to start while they are there.
func TestIPTablesInUse(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "dkipt", nstest.RandomSuffix())
	inUse := func() []string {
		t.Helper()
		var found []string
		if err := ns.Do(func() (err error) { found, err = IPTablesInUse(); return err }); err != nil {
			t.Fatal(err)
		}
		return found
	}
	if found := inUse(); len(found) != 0 {
		t.Fatalf("a fresh namespace: found %v", found)
	}
	ns.MustExec(t, "nft", "add table ip nat; add chain ip nat DOCKER; add table ip filter; add chain ip filter FORWARD")
	if found := inUse(); len(found) != 1 || !strings.Contains(found[0], "iptables-nft nat/DOCKER") {
		t.Errorf("iptables-nft's nat/DOCKER: found %v", found)
	}
	if _, err := exec.LookPath("iptables-legacy"); err == nil {
		ns.MustExec(t, "iptables-legacy", "-t", "filter", "-N", "DOCKER-ISOLATION-STAGE-1")
		if found := inUse(); len(found) != 2 || !strings.Contains(strings.Join(found, " "), "iptables-legacy filter/DOCKER-ISOLATION-STAGE-1") {
			t.Errorf("legacy filter/DOCKER-ISOLATION-STAGE-1: found %v", found)
		}
	} else {
		t.Logf("iptables-legacy not installed: legacy chains not checked")
	}

	bin, err := nstest.BuildAgent()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := ns.Exec(bin, "--docker", "unix://"+filepath.Join(dir, "docker.sock"), "--backend", "nftables",
		"--socket", filepath.Join(dir, "pc.sock"), "--state-dir", filepath.Join(dir, "state"))
	if err == nil || !strings.Contains(out, "dockerd programs iptables itself") || !strings.Contains(out, "\"iptables\": false") {
		t.Errorf("portcullisd --docker with dockerd's chains present: %v\n%s\nwant a refusal that says how to turn them off", err, out)
	}
	if st, _ := filepath.Glob(filepath.Join(dir, "state", "*")); len(st) != 0 {
		t.Errorf("the refused start left state behind: %v", st)
	}
}
