package bench

import (
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// cniMode is the chain Kubernetes-style runtimes use today: the CNI
// project's bridge and portmap plugins (Debian's containernetworking-plugins
// in /usr/lib/cni), run by cnitool. portmap writes iptables rules through
// the iptables command, pinned here to iptables-nft (Debian's default).
//
// The fillers are the ports of one pod (c2), written in exactly the shape
// portmap gives them (a multiport jump per 15 ports in CNI-HOSTPORT-DNAT,
// then three rules per port in the pod's CNI-DN- chain) with one
// iptables-nft-restore: portmap itself runs two iptables commands per rule,
// which would take hours at N = 100,000. The measured pod (c1) and every
// added mapping go through cnitool and the real plugins.
type cniMode struct{}

// cniPluginDir is where Debian installs the CNI plugins.
const cniPluginDir = "/usr/lib/cni"

// cniState is one instance's CNI configuration.
type cniState struct {
	net     string // network name, unique per instance
	confDir string // NETCONFPATH
	binDir  string // first on PATH: iptables -> iptables-nft
	pods    int
}

func (*cniMode) name() string { return "cni-bridge-portmap" }

// maxN: portmap runs iptables -C and -A for every rule of a pod, and with
// iptables-nft each call dumps the whole ruleset: adding the measured pod
// behind 100,000 filler ports takes many minutes.
func (*cniMode) maxN() (int, string) {
	return 10000, "portmap's one iptables-nft call per rule dumps the whole ruleset each time: minutes per pod at this N"
}

func (*cniMode) describe() string {
	return "CNI bridge (isGateway, ipMasq, hairpinMode) and portmap (snat) plugins from /usr/lib/cni run by cnitool, " +
		"portmap's iptables pinned to iptables-nft; fillers are one pod's ports in portmap's exact rule shape " +
		"(bulk iptables-nft-restore), the measured pod and every added mapping go through cnitool ADD (one pod per ADD)"
}

func (*cniMode) check(e *env) error {
	if e.cnitool == "" {
		return fmt.Errorf("cnitool not found: go install github.com/containernetworking/cni/cnitool@v1.3.1 (see make deps-bench)")
	}
	for _, p := range []string{"bridge", "portmap", "host-local"} {
		if _, err := os.Stat(filepath.Join(cniPluginDir, p)); err != nil {
			return fmt.Errorf("CNI plugin %s not in %s: install Debian's containernetworking-plugins", p, cniPluginDir)
		}
	}
	for _, t := range []string{"iptables-nft", "iptables-nft-restore", "iptables-nft-save"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found: install Debian's iptables package", t)
		}
	}
	return nil
}

func (m *cniMode) setup(in *instance) (time.Duration, error) {
	st, err := newCNIState(in)
	if err != nil {
		return 0, err
	}
	in.modeState = st
	// c2 first: the filler pod, with no port of its own through cnitool.
	if in.c2IP, err = st.add(in, in.c2, nil); err != nil {
		return 0, err
	}
	start := time.Now()
	if in.n > 0 {
		rules := portmapRules(st.net, cniContainerID(in.c2.Path), in.c2IP, fillerMappings(in.n, in.c2IP))
		if _, err := (command{ns: in.topo.Node, args: []string{"iptables-nft-restore", "-w", "--noflush"}, stdin: rules,
			timeout: bulkTimeout(in.n)}).run(); err != nil {
			return 0, err
		}
	}
	took := time.Since(start)
	if in.n == 0 {
		took = 0 // nothing was programmed in bulk
	}
	// The measured pod after the fillers, through the real plugins.
	if in.c1IP, err = st.add(in, in.c1, measuredMappings(netip.Addr{})); err != nil {
		return took, err
	}
	in.waitContainers()
	in.echoDst = addrPort(nodeAddr(), echoHostPort)
	in.iperfDst = addrPort(nodeAddr(), iperfPort)
	return took, nil
}

// program adds one pod with all of ms as its hostPorts: CNI publishes ports
// when a pod is added, never on their own.
func (m *cniMode) program(in *instance, ms []Mapping) error {
	st := in.modeState.(*cniState)
	st.pods++
	pod := in.topo.AddContainer(fmt.Sprintf("p%d", st.pods))
	_, err := st.add(in, pod, ms)
	return err
}

func (m *cniMode) footprint(in *instance) map[string]float64 {
	if in.n > footprintMaxN {
		return nil
	}
	out, err := command{ns: in.topo.Node, args: []string{"iptables-nft-save"}, timeout: 2 * time.Minute}.run()
	if err != nil {
		in.note("footprint: %v", err)
		return nil
	}
	return map[string]float64{mRulesetKB: float64(len(out)) / 1024, mRules: float64(countRules(out))}
}

func newCNIState(in *instance) (*cniState, error) {
	dir := in.tb.TempDir()
	st := &cniState{
		net:     "pcbench-" + in.topo.Suffix,
		confDir: filepath.Join(dir, "net.d"),
		binDir:  filepath.Join(dir, "bin"),
	}
	for _, d := range []string{st.confDir, st.binDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// portmap and bridge run `iptables`; pin it to the nft variant whatever
	// the alternatives say.
	for _, t := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		target, err := exec.LookPath(strings.Replace(t, "tables", "tables-nft", 1))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t, err)
		}
		if err := os.Symlink(target, filepath.Join(st.binDir, t)); err != nil {
			return nil, err
		}
	}
	conf := cniConflist(st.net, filepath.Join(dir, "ipam"))
	if err := os.WriteFile(filepath.Join(st.confDir, st.net+".conflist"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	// cnitool caches results in /var/lib/cni/results/<net>-<id>-<ifname>:
	// remove this instance's at the end (the namespaces take the rest).
	in.tb.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", st.net+"-*"))
		for _, f := range files {
			os.Remove(f)
		}
	})
	return st, nil
}

// cniConflist is the network: bridge pc0 as the containers' gateway with
// masquerade, host-local addresses from 172.17.0.0/16 (state in ipamDir),
// then portmap.
func cniConflist(net, ipamDir string) string {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       net,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": bridgeName, "isGateway": true, "ipMasq": true, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": subnet, "gateway": gateway}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
		},
	}
	b, _ := json.MarshalIndent(conf, "", "  ")
	return string(b)
}

// add runs `cnitool add` for pod with its hostPorts and returns the address
// IPAM gave it.
func (st *cniState) add(in *instance, pod *nstest.NS, ports []Mapping) (netip.Addr, error) {
	type portMapping struct {
		HostPort      int    `json:"hostPort"`
		ContainerPort int    `json:"containerPort"`
		Protocol      string `json:"protocol"`
	}
	pms := []portMapping{}
	for _, p := range ports {
		pms = append(pms, portMapping{p.HostPort, p.Port, p.Proto})
	}
	capArgs, _ := json.Marshal(map[string]any{"portMappings": pms})
	out, err := command{
		ns:   in.topo.Node,
		args: []string{in.env.cnitool, "add", st.net, pod.Path},
		env: []string{
			"CNI_PATH=" + cniPluginDir, "NETCONFPATH=" + st.confDir, "CAP_ARGS=" + string(capArgs),
			"PATH=" + st.binDir + ":" + os.Getenv("PATH"),
		},
		timeout: 2*time.Minute + time.Duration(len(ports))*100*time.Millisecond,
	}.run()
	if err != nil {
		return netip.Addr{}, err
	}
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) == 0 {
		return netip.Addr{}, fmt.Errorf("cnitool add %s: no address in its result: %s", pod.Name, trimOutput(out))
	}
	p, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("cnitool add %s: %w", pod.Name, err)
	}
	return p.Addr(), nil
}

// cniContainerID is the container ID cnitool derives from a netns path.
func cniContainerID(netnsPath string) string {
	s := sha512.Sum512([]byte(netnsPath))
	return fmt.Sprintf("cnitool-%x", s[:10])
}

// cniChainName is libcni's utils.MustFormatChainNameWithPrefix: CNI-<prefix>
// followed by the SHA-512 of name+id, 28 characters in all.
func cniChainName(net, id, prefix string) string {
	s := sha512.Sum512([]byte(net + id))
	return fmt.Sprintf("CNI-%s%x", prefix, s)[:28]
}

// portmapRules renders, as iptables-restore --noflush input, the nat rules
// portmap 1.1 installs for pod id (address ip) publishing ms with snat on:
// its shared chains, a multiport jump per 15 ports of one protocol to the
// pod's DN chain, and per port a hairpin mark, a localhost mark and a DNAT.
func portmapRules(net, id string, ip netip.Addr, ms []Mapping) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	dn := cniChainName(net, id, "DN-")
	comment := strconv.Quote(fmt.Sprintf(`dnat name: "%s" id: "%s"`, net, id))
	w("*nat")
	w(":CNI-HOSTPORT-SETMARK - [0:0]")
	w(":CNI-HOSTPORT-MASQ - [0:0]")
	w(":CNI-HOSTPORT-DNAT - [0:0]")
	w(":%s - [0:0]", dn)
	w(`-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000`)
	w(`-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE`)
	w(`-I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ`)
	w(`-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT`)
	w(`-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT`)
	for _, proto := range []string{"tcp", "udp"} { // portmap sorts the protocols
		var ports []string
		flush := func() {
			if len(ports) > 0 {
				w("-A CNI-HOSTPORT-DNAT -m comment --comment %s -m multiport -p %s --destination-ports %s -j %s",
					comment, proto, strings.Join(ports, ","), dn)
				ports = ports[:0]
			}
		}
		for _, m := range ms {
			if m.Proto != proto {
				continue
			}
			ports = append(ports, strconv.Itoa(m.HostPort))
			if len(ports) == 15 {
				flush()
			}
		}
		flush()
	}
	podNet := netip.PrefixFrom(ip, 16).Masked()
	for _, m := range ms {
		base := fmt.Sprintf("-A %s -p %s --dport %d", dn, m.Proto, m.HostPort)
		w("%s -s %s -j CNI-HOSTPORT-SETMARK", base, podNet)
		w("%s -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK", base)
		w("%s -j DNAT --to-destination %s:%d", base, ip, m.Port)
	}
	w("COMMIT")
	return b.String()
}
