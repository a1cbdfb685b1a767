// Package nft is the nftables backend of Portcullis: it replaces the
// iptables rules of Docker's bridge driver with two nftables tables that it
// owns outright, programmed over netlink (github.com/google/nftables; no
// nft process runs).
//
// It runs in one of two modes (Options.Mode). ModeFull, the default and
// what the rest of this text describes unless it says otherwise, is the
// whole dataplane. ModeLocal is the companion of the eBPF backend; see
// "Local mode" below.
//
// # Tables, chains and hooks
//
// table inet portcullis (IPv4 and IPv6 in one):
//
//	raw-prerouting    filter prerouting priority raw (-300)    drop 127.0.0.0/8 not from lo (B11)
//	nat-prerouting    nat    prerouting priority dstnat (-100) jump published
//	filter-prerouting filter prerouting priority filter (0)    published mark from ct mark to packet (B9)
//	nat-output        nat    output     priority -100          jump published (node-originated, B10)
//	published         regular chain: label (ct mark) and DNAT through the dnat* maps (B6-B9)
//	nat-postrouting   nat    postrouting priority srcnat (100) loopback and hairpin masquerade,
//	                                                           then snat maps and masquerade sets
//	filter-forward    filter forward    priority filter (0)    keep outsiders out of bridges (B12, B18)
//	mangle-prerouting, mangle-output (-150), filter-output (0), and the head of
//	filter-prerouting: the stale-flow guard (B13, stale.go), through chains
//	stale-host, stale-target and stale-target-reply and sets dnat*-targets
//
// table bridge portcullis (frames switched by our bridges; needs no
// br_netfilter, B16):
//
//	filter-prerouting filter prerouting priority filter (-200) anti-spoofing of endpoint ports (B17)
//	filter-forward    filter forward    priority filter (-200) icc=false and links (B15)
//
// Base chains are named <type>-<hook>. Every drop rule counts into the
// named counter object of its reason: drop-loopback and drop-inbound in the
// inet table, drop-spoof and drop-icc in the bridge table (Drops reads
// them). A full sync re-creates them with the values they had, so they
// count across restarts. Everything that depends on the
// desired state (bridges, subnets, endpoints, mappings, links) is an element
// of a named set or map, never a rule, so a packet costs one hash lookup per
// rule however many mappings exist, and a change costs only its elements.
// Exact keys use hash sets; only port ranges and subnets use interval sets.
//
// Port ranges: a range whose container ports equal its host ports is one
// interval element translating only the address. A shifted range is expanded
// into one exact element per port, because nft_nat cannot add a port offset.
//
// # Local mode
//
// The eBPF backend translates published ports on the uplink's tc ingress,
// which traffic the node itself originates never crosses. ModeLocal
// (Backend.Name "nftables-local") programs only what that traffic needs,
// in a table of its own:
//
// table inet portcullis-local:
//
//	raw-prerouting  filter prerouting priority raw (-300)   drop 127.0.0.0/8 not from lo (B11)
//	nat-prerouting  nat    prerouting priority dstnat (-100) IPv6 from @bridges: DNAT through
//	                                                        the dnat6* maps (IPv6 hairpin, B9)
//	nat-output      nat    output     priority -100         DNAT through the dnat* maps (B10)
//	nat-postrouting nat    postrouting priority srcnat (100) masquerade into @bridges: source
//	                                                        127.0.0.0/8, DNATed from a local address,
//	                                                        and every DNATed IPv6 connection
//
// with counter drop-loopback, set bridges, the eight dnat* maps and
// saved-route_localnet. The maps hold the same elements as in the full
// mode (the same code builds them); nat-output translates without setting
// the published mark, which only the bridge table's ICC filter needs.
// Wildcard mappings apply to local destinations (fib daddr type local),
// address-bound ones to their address, 127.0.0.1 included. The masquerade
// gives a connection the node opened to a published port the bridge's
// address as source, so the container's answer goes to the node, where
// conntrack restores the original addresses. There is no forward chain, no
// bridge-family table, no ICC, no egress translation of containers: the
// eBPF programs do those. An incremental sync touches only the elements of
// this table: mappings (also when an endpoint change re-resolves them) and
// bridges; endpoint and link changes otherwise cost nothing.
//
// The modes never coexist: a full sync in either deletes the other's tables
// in the same transaction (they are looked up first, so the local mode
// never creates a bridge-family table), and Uninstall in either deletes the
// tables of both, so `portcullisd uninstall` leaves none whichever backend
// ran. route_localnet is handled alike in both; the saved value is read
// from the own table, else from the other mode's, so a switch between modes
// keeps the value from before either.
//
// # Living with other firewalls
//
// The backend reads and writes only its own tables (of either mode). Every
// base chain has policy accept and ends without a verdict for traffic that
// is not ours, so packets go on to Docker's, firewalld's or iptables-nft's tables, which
// see them as they would without us. An accept here does not override a
// drop in another table (netfilter runs every base chain on a hook), so a
// host firewall with a forward drop policy must allow the bridges. The only
// drops are those the contract requires: direct traffic into one of our
// bridges that is neither a reply, published, nor from the same bridge
// (B12, B18); 127.0.0.0/8 arriving from outside lo (B11); frames from an
// endpoint port that do not carry the endpoint's MAC and addresses (B17);
// and frames between endpoints of an icc=false network other than ARP,
// neighbour discovery, links and published connections (B15, B9).
//
// # Marks
//
// One bit, Options.PublishedMark (default 0x01000000, bit 24), labels the
// connections that a published port translated: the published chain ORs it
// into the conntrack mark, filter-prerouting ORs it into the packet mark of
// every packet from a bridge whose connection carries it, and the bridge
// ICC chain accepts packets that carry it. Both marks are only ever ORed
// and tested, so other bits stay as other software set them. The bit was
// chosen clear of what is known to be in use on container hosts: kube-proxy
// 0x4000 and 0x8000, Cilium the 0x0f00 nibble, Tailscale the 0x00ff0000
// byte, Docker Swarm and wg-quick small fwmark values. Calico (mask
// 0xffff0000 by default) and Cilium (identities in the upper 16 bits)
// leave no bit free; set the option if the node runs either. A container
// cannot forge the packet mark: it is cleared when a packet leaves the
// container's namespace through its veth.
//
// # Kernel state outside the tables
//
// The backend sets net.ipv4.conf.all.route_localnet=1 in its namespace
// (needed for B10, see sysctl.go). The previous value is kept in set
// saved-route_localnet, so Uninstall restores it even after an agent
// restart. Flows of a removed or changed mapping stop in the transaction
// that removes it: the stale-flow guard drops packets of translated
// connections whose mapping is gone (B13, stale.go, counter drop-stale).
// Their conntrack entries, and those of an added mapping, are deleted after
// that transaction, off the API path; a full sync never touches conntrack,
// so restarts keep established flows (B21).
//
// # Transactions
//
// Every Apply is one netlink batch, which the kernel commits entirely or not
// at all (B20). A full sync deletes and re-creates both tables in the same
// batch: atomic for packets, and it lets an upgrade change a set's type. An
// incremental sync carries only the element deletions and additions the
// delta implies. After a failure the next Apply is a full sync.
//
// # Kernel quirks this design works around
//
// The kernel this was written for has no nf_conntrack_bridge (a ct
// expression in a bridge table is refused) and no NFT_BRIDGE_META (no meta
// ibrname). So the bridge chains match link replies statelessly by source
// port, as Docker does, but never let a bare TCP SYN pass as a reply; and
// isolation is keyed on endpoint ports rather than on the bridge name.
//
// With br_netfilter on (bridge-nf-call-iptables=1, the default in a new
// namespace), a DNATed packet whose new destination is on the bridge it
// came from is bridged, not routed ("bridged_dnat"), and runs postrouting
// without an input device: hairpin masquerade is therefore keyed on the
// output bridge and the source subnet (set bridge-subnets4/6). A container
// reaching its own published port then needs hairpin mode on its bridge
// port, which whoever plugs the veth must set (Docker does the same when
// its userland proxy is off). On an icc=false network every bridged packet
// of such a connection, both ways, meets the ICC filter, which would block
// a container reaching a neighbour's published port through a node address
// (Docker without its userland proxy blocks it there). The published mark
// (see Marks) lets it through. Marking in the nat chain alone would not do:
// nat chains see only a connection's first packet, so the SYN would pass and
// the SYN-ACK would not; hence the label in the conntrack mark, copied to
// each packet.
//
// # Flows, drops and fill
//
// Flows and FlushFlows are netfilter's conntrack table (package ctflows),
// read in the backend's namespace. Drops reads the counters above. Fill
// reports the elements of each set as the backend holds them, without a
// kernel dump.
package nft
