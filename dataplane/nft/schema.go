package nft

import (
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

// TableName is the name of both tables of ModeFull (families inet and
// bridge). ModeLocal has one table, LocalTableName.
const TableName = "portcullis"

var (
	famInet   = nftables.TableFamilyINet
	famBridge = nftables.TableFamilyBridge
)

// setDef is a named set or map: its key and, for a map, data types. Every
// per-network, per-endpoint, per-mapping and per-link fact lives in one of
// these, never in a rule, so a lookup costs the same with 10 or 100,000
// entries: hash sets for exact keys, interval sets (rbtree, or pipapo for
// concatenations) only where a key holds a range or a prefix.
type setDef struct {
	fam      nftables.TableFamily
	name     string
	key      []nftables.SetDatatype
	data     []nftables.SetDatatype // nil: a set, not a map
	interval bool
	idx      byte // in setRegistry, which names the set in a refKey
}

// setRegistry is every setDef, in the order they were made.
var setRegistry []*setDef

func register(s *setDef) *setDef {
	s.idx = byte(len(setRegistry))
	setRegistry = append(setRegistry, s)
	return s
}

func types(t ...nftables.SetDatatype) []nftables.SetDatatype { return t }

var (
	tIfname  = nftables.TypeIFName
	tIP4     = nftables.TypeIPAddr
	tIP6     = nftables.TypeIP6Addr
	tProto   = nftables.TypeInetProto
	tService = nftables.TypeInetService
	tEther   = nftables.TypeEtherAddr
	tMark    = nftables.TypeMark
)

func inetSet(name string, interval bool, key ...nftables.SetDatatype) *setDef {
	return register(&setDef{fam: famInet, name: name, key: key, interval: interval})
}

func inetMap(name string, interval bool, key, data []nftables.SetDatatype) *setDef {
	return register(&setDef{fam: famInet, name: name, key: key, data: data, interval: interval})
}

func bridgeSet(name string, key ...nftables.SetDatatype) *setDef {
	return register(&setDef{fam: famBridge, name: name, key: key})
}

// The sets of table inet portcullis.
var (
	setBridges     = inetSet("bridges", false, tIfname)
	setBridgePairs = inetSet("bridge-pairs", false, tIfname, tIfname)
	// Each bridge with its own subnets, for hairpin masquerade.
	setBridgeNets4 = inetSet("bridge-subnets4", true, tIfname, tIP4)
	setBridgeNets6 = inetSet("bridge-subnets6", true, tIfname, tIP6)
	// Bridges of internal networks: nothing of theirs leaves the node.
	setInternal = inetSet("internal", false, tIfname)
	// Host veths of routed endpoints (ptp) with their network's subnets,
	// when icc is on: what enters one may go to the others.
	setRoutedICC4 = inetSet("routed-icc4", true, tIfname, tIP4)
	setRoutedICC6 = inetSet("routed-icc6", true, tIfname, tIP6)

	// Published ports. "any" maps hold wildcard mappings (every node
	// address); "range" maps hold port ranges whose container range equals
	// the host range, so only the address is translated.
	mapDNAT4         = inetMap("dnat4", false, types(tIP4, tProto, tService), types(tIP4, tService))
	mapDNAT4Range    = inetMap("dnat4-range", true, types(tIP4, tProto, tService), types(tIP4))
	mapDNAT4Any      = inetMap("dnat4-any", false, types(tProto, tService), types(tIP4, tService))
	mapDNAT4AnyRange = inetMap("dnat4-any-range", true, types(tProto, tService), types(tIP4))
	mapDNAT6         = inetMap("dnat6", false, types(tIP6, tProto, tService), types(tIP6, tService))
	mapDNAT6Range    = inetMap("dnat6-range", true, types(tIP6, tProto, tService), types(tIP6))
	mapDNAT6Any      = inetMap("dnat6-any", false, types(tProto, tService), types(tIP6, tService))
	mapDNAT6AnyRange = inetMap("dnat6-any-range", true, types(tProto, tService), types(tIP6))

	// Egress source translation.
	mapSNAT4EP  = inetMap("snat4-ep", false, types(tIP4), types(tIP4))
	mapSNAT6EP  = inetMap("snat6-ep", false, types(tIP6), types(tIP6))
	mapSNAT4Net = inetMap("snat4-net", true, types(tIP4), types(tIP4))
	mapSNAT6Net = inetMap("snat6-net", true, types(tIP6), types(tIP6))
	setMasq4    = inetSet("masq4", true, tIP4)
	setMasq6    = inetSet("masq6", true, tIP6)

	// setSavedLocalnet holds the value net.ipv4.conf.all.route_localnet had
	// before the backend set it to 1, so Uninstall can restore it even from
	// another process (the agent restarted, or pcctl).
	setSavedLocalnet = inetSet("saved-route_localnet", false, tMark)
)

// The sets of table bridge portcullis.
var (
	setPorts      = bridgeSet("ports", tIfname)
	setPortMAC    = bridgeSet("port-mac", tIfname, tEther)
	setPortIP4    = bridgeSet("port-ip4", tIfname, tIP4)
	setPortIP6    = bridgeSet("port-ip6", tIfname, tIP6)
	setIsolated   = bridgeSet("isolated", tIfname)
	setLinks4     = bridgeSet("links4", tIP4, tIP4, tProto, tService)
	setLinks4Back = bridgeSet("links4-reply", tIP4, tIP4, tProto, tService)
	setLinks6     = bridgeSet("links6", tIP6, tIP6, tProto, tService)
	setLinks6Back = bridgeSet("links6-reply", tIP6, tIP6, tProto, tService)
)

var inetSets = []*setDef{
	setBridges, setBridgePairs, setBridgeNets4, setBridgeNets6, setInternal, setRoutedICC4, setRoutedICC6,
	mapDNAT4, mapDNAT4Range, mapDNAT4Any, mapDNAT4AnyRange,
	mapDNAT6, mapDNAT6Range, mapDNAT6Any, mapDNAT6AnyRange,
	mapSNAT4EP, mapSNAT6EP, mapSNAT4Net, mapSNAT6Net, setMasq4, setMasq6,
	setSavedLocalnet,
	setTargets4, setTargets4Range, setTargets6, setTargets6Range,
}

// The sets of table inet portcullis-local (ModeLocal): the bridges, for
// the masquerade of node-originated connections into them, and the
// published-port maps, whose elements are those of the full mode.
var localSets = []*setDef{
	setBridges,
	mapDNAT4, mapDNAT4Range, mapDNAT4Any, mapDNAT4AnyRange,
	mapDNAT6, mapDNAT6Range, mapDNAT6Any, mapDNAT6AnyRange,
	setSavedLocalnet,
}

var bridgeSets = []*setDef{
	setPorts, setPortMAC, setPortIP4, setPortIP6, setIsolated,
	setLinks4, setLinks4Back, setLinks6, setLinks6Back,
}

func typeText(t []nftables.SetDatatype) string {
	names := make([]string, len(t))
	for i, x := range t {
		names[i] = x.Name
	}
	return strings.Join(names, " . ")
}

// concat reports whether the key is a concatenation.
func (s *setDef) concat() bool { return len(s.key) > 1 }

// kernelSet is the google/nftables form of s, for table t.
func (s *setDef) kernelSet(t *nftables.Table) *nftables.Set {
	ks := &nftables.Set{
		Table:    t,
		Name:     s.name,
		KeyType:  concatType(s.key),
		Interval: s.interval,
		IsMap:    s.data != nil,
		// Only interval concatenations need NFT_SET_CONCAT and the field
		// lengths: they pick the pipapo backend. Hash sets take any key.
		Concatenation: s.interval && s.concat(),
	}
	if s.data != nil {
		ks.DataType = concatType(s.data)
	}
	// nft prints a single-type key in the byte order the set's user data
	// names; strings and marks are host-endian (without this an ifname set
	// lists as ""). Concatenations are decoded per field and need nothing.
	if !s.concat() && (s.key[0].Name == tIfname.Name || s.key[0].Name == tMark.Name) {
		ks.KeyByteOrder = binaryutil.NativeEndian
	}
	return ks
}

func concatType(t []nftables.SetDatatype) nftables.SetDatatype {
	if len(t) == 1 {
		return t[0]
	}
	return nftables.MustConcatSetType(t...)
}

// counterDef is a named counter object that the drop rules of one reason
// update (`counter name "drop-icc" drop`), so Drops reads them all with one
// dump per table.
type counterDef struct {
	reason string // dataplane.Drop.Reason; the object is named drop-<reason>
}

func (c *counterDef) name() string { return "drop-" + c.reason }

// The drop counters. An object belongs to a table and only that table's
// rules can refer to it, so each reason lives in the table that drops for it.
var (
	dropLoopback = &counterDef{reason: "loopback"} // B11: 127.0.0.0/8 not from lo
	dropInbound  = &counterDef{reason: "inbound"}  // B12, B18: unpublished access into a bridge
	dropSpoof    = &counterDef{reason: "spoof"}    // B17: wrong MAC or address from an endpoint
	dropICC      = &counterDef{reason: "icc"}      // B15: between endpoints of an icc=false network
	dropInternal = &counterDef{reason: "internal"} // out of an internal network

	inetCounters   = []*counterDef{dropLoopback, dropInbound, dropStale, dropInternal}
	bridgeCounters = []*counterDef{dropSpoof, dropICC}
	localCounters  = []*counterDef{dropLoopback}
)

// chainDef is a chain with its rules. Base chains are named <type>-<hook>.
type chainDef struct {
	name  string
	base  *nftables.Chain // nil for a regular chain; Table is set at programming time
	head  string          // "type nat hook prerouting priority dstnat; policy accept;"
	rules []rule
}

// tableDef is one of our tables.
type tableDef struct {
	fam      nftables.TableFamily
	name     string // TableName or LocalTableName
	counters []*counterDef
	sets     []*setDef
	chains   []*chainDef
}

func (t *tableDef) table() *nftables.Table {
	return &nftables.Table{Name: t.name, Family: t.fam}
}

func famName(f nftables.TableFamily) string {
	if f == famBridge {
		return "bridge"
	}
	return "inet"
}

// baseChain describes a base chain. Every base chain has policy accept:
// packets that are not ours pass untouched, and other tables (Docker's,
// firewalld's, iptables-nft's) still see them and decide for themselves.
func baseChain(name string, typ nftables.ChainType, hook *nftables.ChainHook, hookName string,
	prio int32, prioText string, rules ...rule) *chainDef {
	accept := nftables.ChainPolicyAccept
	p := nftables.ChainPriority(prio)
	return &chainDef{
		name:  name,
		base:  &nftables.Chain{Name: name, Type: typ, Hooknum: hook, Priority: &p, Policy: &accept},
		head:  "type " + string(typ) + " hook " + hookName + " priority " + prioText + "; policy accept;",
		rules: rules,
	}
}

func regularChain(name string, rules ...rule) *chainDef {
	return &chainDef{name: name, rules: rules}
}

// schema returns the tables of mode m with their counters, sets, chains
// and rules, built fresh (the expressions are patched with set IDs while
// programming). mark is the packet mark bit of published connections
// (Options.PublishedMark); ModeLocal does not use it.
func schema(m Mode, mark uint32) []*tableDef {
	ts := tables(m)
	if m == ModeLocal {
		ts[0].chains = localChains()
		return ts
	}
	ts[0].chains, ts[1].chains = inetChains(mark), bridgeChains(mark)
	return ts
}

// tables returns the tables of mode m without their chains.
func tables(m Mode) []*tableDef {
	if m == ModeLocal {
		return []*tableDef{
			{fam: famInet, name: LocalTableName, counters: localCounters, sets: localSets},
		}
	}
	return []*tableDef{
		{fam: famInet, name: TableName, counters: inetCounters, sets: inetSets},
		{fam: famBridge, name: TableName, counters: bridgeCounters, sets: bridgeSets},
	}
}
