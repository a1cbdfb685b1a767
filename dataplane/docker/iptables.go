package docker

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/google/nftables"
)

// dockerChains are the chains dockerd makes when it programs iptables.
var dockerChains = []string{"DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-USER"}

// IPTablesInUse reports where dockerd's own iptables chains are, in this
// network namespace, with either iptables flavour: iptables-nft (tables
// ip nat/filter in nftables) or iptables-legacy. Empty means none: dockerd
// runs with --iptables=false, and Portcullis may take over.
func IPTablesInUse() ([]string, error) {
	var found []string
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	for _, ch := range chains {
		fam := ch.Table.Family
		if (fam == nftables.TableFamilyIPv4 || fam == nftables.TableFamilyIPv6) && isDockerChain(ch.Name) {
			found = append(found, fmt.Sprintf("iptables-nft %s/%s", ch.Table.Name, ch.Name))
		}
	}
	found = append(found, legacyChains()...)
	return found, nil
}

func isDockerChain(name string) bool {
	for _, c := range dockerChains {
		if name == c {
			return true
		}
	}
	return false
}

// legacyChains asks iptables-legacy, when this namespace has legacy tables
// at all (ip_tables_names of the calling thread's namespace) and the tool is installed.
func legacyChains() []string {
	names, err := os.ReadFile("/proc/thread-self/net/ip_tables_names")
	if err != nil || len(strings.TrimSpace(string(names))) == 0 {
		return nil
	}
	bin, err := exec.LookPath("iptables-legacy")
	if err != nil {
		return nil
	}
	var found []string
	for _, table := range []string{"nat", "filter"} {
		if !strings.Contains(string(names), table) {
			continue
		}
		out, err := exec.Command(bin, "-w", "-t", table, "-S").Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "-N" && isDockerChain(f[1]) {
				found = append(found, fmt.Sprintf("iptables-legacy %s/%s", table, f[1]))
			}
		}
	}
	return found
}
