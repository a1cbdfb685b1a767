package docker

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Docker's bridge driver options and the label this agent reads.
const (
	optBridgeName  = "com.docker.network.bridge.name"
	optDefault     = "com.docker.network.bridge.default_bridge"
	optICC         = "com.docker.network.bridge.enable_icc"
	optMasquerade  = "com.docker.network.bridge.enable_ip_masquerade"
	optHostBinding = "com.docker.network.bridge.host_binding_ipv4"
	// LabelSNATIP gives a container its own source address (and makes its
	// published ports answer on it): docker run -l portcullis.snat_ip=IP.
	LabelSNATIP = "portcullis.snat_ip"
)

// Defaults are what the agent's flags say for docker0, where dockerd with
// --iptables=false refuses --icc=false and reports ip masquerade off.
type Defaults struct {
	ICC        bool // portcullisd --icc
	Masquerade bool // portcullisd --ip-masq
}

// Container is what the translation needs of one running container: its
// inspect answer and the host end of its veth on each network.
type Container struct {
	Info  container.InspectResponse
	Veths map[string]string // network name -> host veth
	// VethErr says why Veths could not be found, when it could not.
	VethErr string
}

// Desired is the part of the node's state that Docker's objects make.
type Desired struct {
	Networks  map[string]model.Network
	Endpoints map[string]model.Endpoint
	Ports     map[string]model.PortMapping
	Links     map[string]model.Link
	// Ignored counts what is not ours to manage, by why.
	Ignored map[string]int
	// Problems are objects that could not be translated, with why.
	Problems []string
}

func newDesired() *Desired {
	return &Desired{Networks: map[string]model.Network{}, Endpoints: map[string]model.Endpoint{},
		Ports: map[string]model.PortMapping{}, Links: map[string]model.Link{}, Ignored: map[string]int{}}
}

// Translate maps Docker's bridge networks and running containers onto the
// model. It never fails as a whole: what cannot be mapped is listed in
// Problems, and the rest still is.
func Translate(nets []network.Summary, ctrs []Container, def Defaults) *Desired {
	d := newDesired()
	hostIPs := map[string]string{}
	for _, n := range nets {
		mn, hostIP, why := translateNetwork(n, def)
		switch {
		case why != "":
			d.Ignored[why]++
			continue
		case mn.Subnet == "":
			d.Problems = append(d.Problems, fmt.Sprintf("network %s: no IPv4 subnet in its IPAM config", n.Name))
			continue
		}
		d.Networks[mn.Name] = mn
		hostIPs[mn.Name] = hostIP
	}
	byName := map[string]*Container{}
	for i := range ctrs {
		c := &ctrs[i]
		byName[containerName(c.Info)] = c
		d.addContainer(c, hostIPs)
	}
	for i := range ctrs {
		d.addLinks(&ctrs[i], byName)
	}
	return d
}

// translateNetwork returns the model network, the default host address of
// its published ports, or why it is not managed.
func translateNetwork(n network.Summary, def Defaults) (model.Network, string, string) {
	if n.Driver != "bridge" {
		return model.Network{}, "", "network driver " + n.Driver
	}
	opt := n.Options
	mn := model.Network{Name: n.Name, Bridge: opt[optBridgeName], Source: model.SourceDocker, Internal: n.Internal}
	if mn.Bridge == "" {
		mn.Bridge = "br-" + shortID(n.ID)
	}
	for _, c := range n.IPAM.Config {
		switch {
		case c.Subnet.Addr().Is4() && mn.Subnet == "":
			mn.Subnet = c.Subnet.Masked().String()
			if c.Gateway.IsValid() {
				mn.Gateway = c.Gateway.String()
			}
		case c.Subnet.Addr().Is6() && n.EnableIPv6 && mn.Subnet6 == "":
			mn.Subnet6 = c.Subnet.Masked().String()
			if c.Gateway.IsValid() {
				mn.Gateway6 = c.Gateway.String()
			}
		}
	}
	icc, masq := optBool(opt, optICC, true), optBool(opt, optMasquerade, true)
	if opt[optDefault] == "true" {
		icc, masq = def.ICC, def.Masquerade
	}
	mn.ICC, mn.Masquerade = &icc, &masq
	hostIP := opt[optHostBinding]
	if a, err := netip.ParseAddr(hostIP); err != nil || a.IsUnspecified() {
		hostIP = ""
	}
	return mn, hostIP, ""
}

func optBool(opt map[string]string, key string, def bool) bool {
	if b, err := strconv.ParseBool(opt[key]); err == nil {
		return b
	}
	return def
}

func (d *Desired) addContainer(c *Container, hostIPs map[string]string) {
	info := c.Info
	mode := string(info.HostConfig.NetworkMode)
	switch {
	case mode == "host" || mode == "none":
		d.Ignored["network mode "+mode]++
		return
	case strings.HasPrefix(mode, "container:"):
		d.Ignored["network mode container"]++
		return
	}
	name := containerName(info)
	var mine []string
	for _, nn := range slices.Sorted(maps.Keys(info.NetworkSettings.Networks)) {
		if _, ok := d.Networks[nn]; !ok {
			continue
		}
		ep, err := d.endpoint(c, nn)
		if err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("container %s on network %s: %v", name, nn, err))
			continue
		}
		d.Endpoints[ep.ID] = ep
		mine = append(mine, nn)
	}
	if len(mine) == 0 {
		d.Ignored["container on no managed network"]++
		return
	}
	// Docker publishes on the network the container was started on; after
	// `docker network connect` the first one it is still on.
	pub := mine[0]
	if m := cmp.Or(mode, "default"); m == "default" || m == "bridge" {
		m = "bridge"
		if slices.Contains(mine, m) {
			pub = m
		}
	} else if slices.Contains(mine, m) {
		pub = m
	}
	if d.Networks[pub].Internal {
		// dockerd allocates the ports, but nothing reaches an internal
		// network from outside: Docker does not publish them either.
		return
	}
	d.addPorts(c, EndpointID(info.ID, pub), hostIPs[pub])
}

func (d *Desired) endpoint(c *Container, netName string) (model.Endpoint, error) {
	info := c.Info
	es := info.NetworkSettings.Networks[netName]
	if es == nil || !es.IPAddress.IsValid() {
		return model.Endpoint{}, fmt.Errorf("no IPv4 address yet")
	}
	veth := c.Veths[netName]
	if veth == "" && c.VethErr != "" {
		return model.Endpoint{}, fmt.Errorf("host end of its veth not found: %s", c.VethErr)
	}
	if veth == "" {
		return model.Endpoint{}, fmt.Errorf("host end of its veth not found")
	}
	ep := model.Endpoint{
		ID: EndpointID(info.ID, netName), Network: netName, IP: es.IPAddress.String(),
		MAC: es.MacAddress.String(), HostIfname: veth, Name: containerName(info),
		Hostname: info.Config.Hostname, Env: info.Config.Env, Source: model.SourceDocker,
		SNATIP: info.Config.Labels[LabelSNATIP],
	}
	if d.Networks[netName].Subnet6 != "" && es.GlobalIPv6Address.IsValid() {
		ep.IP6 = es.GlobalIPv6Address.String()
	}
	for _, p := range slices.SortedFunc(maps.Keys(info.Config.ExposedPorts), comparePorts) {
		ep.Exposed = append(ep.Exposed, model.PortProto{Port: int(p.Num()), Proto: string(p.Proto())})
	}
	return ep, nil
}

func comparePorts(a, b network.Port) int {
	return cmp.Or(cmp.Compare(a.Num(), b.Num()), cmp.Compare(a.Proto(), b.Proto()))
}

// binding is one host port of one container port, before ranges are merged.
type binding struct {
	proto    string
	hostIP   string
	hostPort int
	port     int
}

// addPorts maps the container's port bindings (NetworkSettings.Ports: what
// dockerd allocated, -P included) onto mappings of endpoint ep. Runs of
// consecutive ports, as `-p 8000-8010:8000-8010` makes, become one ranged
// mapping.
func (d *Desired) addPorts(c *Container, ep, defHostIP string) {
	seen := map[binding]bool{}
	var bs []binding
	for p, list := range c.Info.NetworkSettings.Ports {
		for _, b := range list {
			hp, err := strconv.Atoi(b.HostPort)
			if err != nil || hp <= 0 {
				continue
			}
			hostIP := ""
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				hostIP = b.HostIP.String()
			} else if !b.HostIP.IsValid() || b.HostIP.Is4() {
				hostIP = defHostIP
			}
			x := binding{proto: string(p.Proto()), hostIP: hostIP, hostPort: hp, port: int(p.Num())}
			if !seen[x] { // 0.0.0.0 and :: both mean every address here
				seen[x] = true
				bs = append(bs, x)
			}
		}
	}
	slices.SortFunc(bs, func(a, b binding) int {
		return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.hostIP, b.hostIP), cmp.Compare(a.hostPort, b.hostPort))
	})
	for i := 0; i < len(bs); {
		j := i + 1
		for j < len(bs) && bs[j].proto == bs[i].proto && bs[j].hostIP == bs[i].hostIP &&
			bs[j].hostPort == bs[j-1].hostPort+1 && bs[j].port == bs[j-1].port+1 {
			j++
		}
		pm := portMapping(c.Info.ID, ep, bs[i], bs[j-1])
		d.Ports[pm.ID] = pm
		i = j
	}
}

func portMapping(cid, ep string, first, last binding) model.PortMapping {
	pm := model.PortMapping{Endpoint: ep, Proto: first.proto, HostIP: first.hostIP, Source: model.SourceDocker}
	hp := strconv.Itoa(first.hostPort)
	if first == last {
		pm.HostPort, pm.Port = first.hostPort, first.port
	} else {
		hp = fmt.Sprintf("%d-%d", first.hostPort, last.hostPort)
		pm.HostPortRange, pm.PortRange = hp, fmt.Sprintf("%d-%d", first.port, last.port)
	}
	pm.ID = fmt.Sprintf("%s.%s.%s", shortID(cid), first.proto, hp)
	if first.hostIP != "" {
		pm.ID += "." + idSafe(first.hostIP)
	}
	return pm
}

// addLinks maps legacy links (HostConfig.Links, "/child:/parent/alias"):
// they exist on the default bridge only, between running containers.
func (d *Desired) addLinks(c *Container, byName map[string]*Container) {
	parent := EndpointID(c.Info.ID, "bridge")
	if _, ok := d.Endpoints[parent]; !ok {
		return
	}
	for _, l := range c.Info.HostConfig.Links {
		childName, path, ok := strings.Cut(l, ":")
		alias := path[strings.LastIndex(path, "/")+1:]
		child := byName[strings.TrimPrefix(childName, "/")]
		if !ok || alias == "" {
			d.Problems = append(d.Problems, fmt.Sprintf("container %s: link %q is not /child:/parent/alias", containerName(c.Info), l))
			continue
		}
		if child == nil {
			continue // not running: no link until it is
		}
		cid := EndpointID(child.Info.ID, "bridge")
		if _, ok := d.Endpoints[cid]; !ok {
			continue
		}
		ml := model.Link{Parent: parent, Alias: alias, Child: cid, Source: model.SourceDocker}
		d.Links[ml.Key()] = ml
	}
}

// EndpointID names a container's interface on a network: the short
// container ID and the network name (its short ID when the name is long).
func EndpointID(cid, netName string) string {
	id := shortID(cid) + "." + netName
	if len(id) > 64 {
		id = shortID(cid) + "." + idSafe(netName)
	}
	return id
}

func containerName(c container.InspectResponse) string { return strings.TrimPrefix(c.Name, "/") }

func shortID(id string) string { return id[:min(12, len(id))] }

// idSafe turns s into characters that model names allow, hashing what is
// too long: IPv6 addresses and long names.
func idSafe(s string) string {
	s = strings.ReplaceAll(s, ":", "_")
	if len(s) <= 24 {
		return s
	}
	h := fnv.New64a()
	h.Write([]byte(s))
	return fmt.Sprintf("%016x", h.Sum64())
}
