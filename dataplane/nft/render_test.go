package nft

import (
	"strings"
	"testing"
)

// TestRenderGolden pins the ruleset for smallState. The same text is
// checked against the kernel's own listing in TestKernelMatchesRender, so
// this file is also the reference of what the backend programs.
func TestRenderGolden(t *testing.T) {
	got := Render(smallState(t), 0)
	if got == goldenSmallState {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(goldenSmallState, "\n")
	for i := range max(len(g), len(w)) {
		if at(g, i) != at(w, i) {
			t.Fatalf("rendering differs at line %d:\n got: %q\nwant: %q\n\nfull rendering:\n%s", i+1, at(g, i), at(w, i), got)
		}
	}
}

const goldenSmallState = `table inet portcullis {
	counter drop-loopback {
		packets 0 bytes 0
	}

	counter drop-inbound {
		packets 0 bytes 0
	}

	counter drop-stale {
		packets 0 bytes 0
	}

	counter drop-internal {
		packets 0 bytes 0
	}

	set bridges {
		type ifname
		elements = { "pc0",
			     "pc1" }
	}

	set bridge-pairs {
		type ifname . ifname
		elements = { "pc0" . "pc0",
			     "pc1" . "pc1" }
	}

	set bridge-subnets4 {
		type ifname . ipv4_addr
		flags interval
		elements = { "pc0" . 172.18.0.0/16,
			     "pc1" . 172.19.0.0/16 }
	}

	set bridge-subnets6 {
		type ifname . ipv6_addr
		flags interval
		elements = { "pc0" . fd00:18::/64 }
	}

	set internal {
		type ifname
	}

	set routed-icc4 {
		type ifname . ipv4_addr
		flags interval
	}

	set routed-icc6 {
		type ifname . ipv6_addr
		flags interval
	}

	map dnat4 {
		type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
		elements = { 127.0.0.1 . udp . 5353 : 172.18.0.3 . 53,
			     192.0.2.1 . sctp . 9000 : 172.19.0.2 . 7000,
			     192.0.2.1 . sctp . 9001 : 172.19.0.2 . 7001,
			     192.0.2.1 . sctp . 9002 : 172.19.0.2 . 7002 }
	}

	map dnat4-range {
		type ipv4_addr . inet_proto . inet_service : ipv4_addr
		flags interval
	}

	map dnat4-any {
		type inet_proto . inet_service : ipv4_addr . inet_service
		elements = { tcp . 8080 : 172.18.0.2 . 80 }
	}

	map dnat4-any-range {
		type inet_proto . inet_service : ipv4_addr
		flags interval
		elements = { tcp . 8000-8009 : 172.18.0.2 }
	}

	map dnat6 {
		type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service
		elements = { 2001:db8::1 . tcp . 443 : fd00:18::2 . 443 }
	}

	map dnat6-range {
		type ipv6_addr . inet_proto . inet_service : ipv6_addr
		flags interval
	}

	map dnat6-any {
		type inet_proto . inet_service : ipv6_addr . inet_service
		elements = { tcp . 8080 : fd00:18::2 . 80 }
	}

	map dnat6-any-range {
		type inet_proto . inet_service : ipv6_addr
		flags interval
		elements = { tcp . 8000-8009 : fd00:18::2 }
	}

	map snat4-ep {
		type ipv4_addr : ipv4_addr
		elements = { 172.18.0.3 : 192.0.2.10 }
	}

	map snat6-ep {
		type ipv6_addr : ipv6_addr
	}

	map snat4-net {
		type ipv4_addr : ipv4_addr
		flags interval
		elements = { 172.19.0.0/16 : 192.0.2.11 }
	}

	map snat6-net {
		type ipv6_addr : ipv6_addr
		flags interval
	}

	set masq4 {
		type ipv4_addr
		flags interval
		elements = { 172.18.0.0/16 }
	}

	set masq6 {
		type ipv6_addr
		flags interval
		elements = { fd00:18::/64 }
	}

	set saved-route_localnet {
		type mark
		elements = { 0x00000000 }
	}

	set dnat4-targets {
		type inet_proto . inet_service . ipv4_addr . inet_service
		elements = { tcp . 8080 . 172.18.0.2 . 80,
			     udp . 5353 . 172.18.0.3 . 53,
			     sctp . 9000 . 172.19.0.2 . 7000,
			     sctp . 9001 . 172.19.0.2 . 7001,
			     sctp . 9002 . 172.19.0.2 . 7002 }
	}

	set dnat4-targets-range {
		type inet_proto . inet_service . ipv4_addr . inet_service
		flags interval
		elements = { tcp . 8000-8009 . 172.18.0.2 . 8000-8009 }
	}

	set dnat6-targets {
		type inet_proto . inet_service . ipv6_addr . inet_service
		elements = { tcp . 443 . fd00:18::2 . 443,
			     tcp . 8080 . fd00:18::2 . 80 }
	}

	set dnat6-targets-range {
		type inet_proto . inet_service . ipv6_addr . inet_service
		flags interval
		elements = { tcp . 8000-8009 . fd00:18::2 . 8000-8009 }
	}

	chain raw-prerouting {
		type filter hook prerouting priority raw; policy accept;
		iifname != "lo" ip daddr 127.0.0.0/8 counter name "drop-loopback" drop
	}

	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump published
	}

	chain filter-prerouting {
		type filter hook prerouting priority filter; policy accept;
		ct state established,new ct status dnat ct mark & 0x01000000 == 0x01000000 ct direction original jump stale-target
		ct state established,new ct status dnat ct mark & 0x01000000 == 0x01000000 ct direction reply jump stale-target-reply
		iifname @bridges ct mark & 0x01000000 == 0x01000000 meta mark set meta mark | 0x01000000
	}

	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump published
	}

	chain published {
		ip daddr . meta l4proto . th dport @dnat4 ct mark set ct mark | 0x01000000
		dnat ip to ip daddr . meta l4proto . th dport map @dnat4
		ip daddr . meta l4proto . th dport @dnat4-range ct mark set ct mark | 0x01000000
		dnat ip to ip daddr . meta l4proto . th dport map @dnat4-range
		ip6 daddr . meta l4proto . th dport @dnat6 ct mark set ct mark | 0x01000000
		dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6
		ip6 daddr . meta l4proto . th dport @dnat6-range ct mark set ct mark | 0x01000000
		dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6-range
		meta nfproto ipv4 fib daddr type local meta l4proto . th dport @dnat4-any ct mark set ct mark | 0x01000000
		meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @dnat4-any
		meta nfproto ipv4 fib daddr type local meta l4proto . th dport @dnat4-any-range ct mark set ct mark | 0x01000000
		meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @dnat4-any-range
		meta nfproto ipv6 fib daddr type local meta l4proto . th dport @dnat6-any ct mark set ct mark | 0x01000000
		meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6-any
		meta nfproto ipv6 fib daddr type local meta l4proto . th dport @dnat6-any-range ct mark set ct mark | 0x01000000
		meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6-any-range
	}

	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname @bridges ip saddr 127.0.0.0/8 masquerade
		ct status dnat oifname . ip saddr @bridge-subnets4 masquerade
		ct status dnat oifname . ip6 saddr @bridge-subnets6 masquerade
		oifname @bridges return
		snat ip to ip saddr map @snat4-ep
		snat ip6 to ip6 saddr map @snat6-ep
		snat ip to ip saddr map @snat4-net
		snat ip6 to ip6 saddr map @snat6-net
		ip saddr @masq4 masquerade
		ip6 saddr @masq6 masquerade
	}

	chain filter-forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		ct status dnat accept
		iifname @internal oifname != @bridges counter name "drop-internal" drop
		iifname @bridges oifname != @bridges accept
		iifname . oifname @bridge-pairs accept
		iifname . ip daddr @routed-icc4 accept
		iifname . ip6 daddr @routed-icc6 accept
		oifname @bridges counter name "drop-inbound" drop
	}

	chain mangle-prerouting {
		type filter hook prerouting priority mangle; policy accept;
		ct state established,new ct status dnat ct mark & 0x01000000 == 0x01000000 ct direction original jump stale-host
	}

	chain mangle-output {
		type filter hook output priority mangle; policy accept;
		ct state established,new ct status dnat ct mark & 0x01000000 == 0x01000000 ct direction original jump stale-host
	}

	chain filter-output {
		type filter hook output priority filter; policy accept;
		ct state established,new ct status dnat ct mark & 0x01000000 == 0x01000000 ct direction original jump stale-target
	}

	chain stale-host {
		ip daddr . meta l4proto . th dport @dnat4 return
		ip daddr . meta l4proto . th dport @dnat4-range return
		ip6 daddr . meta l4proto . th dport @dnat6 return
		ip6 daddr . meta l4proto . th dport @dnat6-range return
		meta nfproto ipv4 fib daddr type local meta l4proto . th dport @dnat4-any return
		meta nfproto ipv4 fib daddr type local meta l4proto . th dport @dnat4-any-range return
		meta nfproto ipv6 fib daddr type local meta l4proto . th dport @dnat6-any return
		meta nfproto ipv6 fib daddr type local meta l4proto . th dport @dnat6-any-range return
		counter name "drop-stale" drop
	}

	chain stale-target {
		meta l4proto . ct original proto-dst . ip daddr . th dport @dnat4-targets return
		meta l4proto . ct original proto-dst . ip daddr . th dport @dnat4-targets-range return
		meta l4proto . ct original proto-dst . ip6 daddr . th dport @dnat6-targets return
		meta l4proto . ct original proto-dst . ip6 daddr . th dport @dnat6-targets-range return
		counter name "drop-stale" drop
	}

	chain stale-target-reply {
		meta l4proto . ct original proto-dst . ip saddr . th sport @dnat4-targets return
		meta l4proto . ct original proto-dst . ip saddr . th sport @dnat4-targets-range return
		meta l4proto . ct original proto-dst . ip6 saddr . th sport @dnat6-targets return
		meta l4proto . ct original proto-dst . ip6 saddr . th sport @dnat6-targets-range return
		counter name "drop-stale" drop
	}
}
table bridge portcullis {
	counter drop-spoof {
		packets 0 bytes 0
	}

	counter drop-icc {
		packets 0 bytes 0
	}

	set ports {
		type ifname
		elements = { "pcv-app",
			     "pcv-db",
			     "pcv-web" }
	}

	set port-mac {
		type ifname . ether_addr
		elements = { "pcv-app" . 02:42:ac:13:00:02,
			     "pcv-db" . 02:42:ac:12:00:03,
			     "pcv-web" . 02:42:ac:12:00:02 }
	}

	set port-ip4 {
		type ifname . ipv4_addr
		elements = { "pcv-app" . 172.19.0.2,
			     "pcv-db" . 172.18.0.3,
			     "pcv-web" . 172.18.0.2 }
	}

	set port-ip6 {
		type ifname . ipv6_addr
		elements = { "pcv-app" . fe80::42:acff:fe13:2,
			     "pcv-db" . fe80::42:acff:fe12:3,
			     "pcv-web" . fd00:18::2,
			     "pcv-web" . fe80::42:acff:fe12:2 }
	}

	set isolated {
		type ifname
		elements = { "pcv-db",
			     "pcv-web" }
	}

	set links4 {
		type ipv4_addr . ipv4_addr . inet_proto . inet_service
		elements = { 172.18.0.2 . 172.18.0.3 . tcp . 5432 }
	}

	set links4-reply {
		type ipv4_addr . ipv4_addr . inet_proto . inet_service
		elements = { 172.18.0.3 . 172.18.0.2 . tcp . 5432 }
	}

	set links6 {
		type ipv6_addr . ipv6_addr . inet_proto . inet_service
	}

	set links6-reply {
		type ipv6_addr . ipv6_addr . inet_proto . inet_service
	}

	chain filter-prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname != @ports accept
		iifname . ether saddr != @port-mac counter name "drop-spoof" drop
		icmpv6 type nd-router-advert counter name "drop-spoof" drop
		icmpv6 type nd-redirect counter name "drop-spoof" drop
		icmpv6 type router-renumbering counter name "drop-spoof" drop
		icmpv6 type nd-neighbor-solicit ip6 saddr :: iifname . @th,64,128 != @port-ip6 counter name "drop-spoof" drop
		icmpv6 type nd-neighbor-solicit ip6 saddr fe80::/10 iifname . ip6 saddr != @port-ip6 counter name "drop-spoof" drop
		icmpv6 type nd-neighbor-solicit @th,192,8 0x1 iifname . @th,208,48 != @port-mac counter name "drop-spoof" drop
		icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @port-ip6 counter name "drop-spoof" drop
		icmpv6 type nd-neighbor-advert ip6 saddr :: counter name "drop-spoof" drop
		icmpv6 type nd-neighbor-advert ip6 saddr fe80::/10 iifname . ip6 saddr != @port-ip6 counter name "drop-spoof" drop
		icmpv6 type nd-neighbor-advert @th,192,8 0x2 iifname . @th,208,48 != @port-mac counter name "drop-spoof" drop
		iifname . ip saddr @port-ip4 accept
		iifname . arp saddr ether @port-mac iifname . arp saddr ip @port-ip4 accept
		iifname . ip6 saddr @port-ip6 accept
		ip6 saddr fe80::/10 accept
		ip6 saddr :: accept
		counter name "drop-spoof" drop
	}

	chain filter-forward {
		type filter hook forward priority filter; policy accept;
		iifname != @isolated oifname != @isolated accept
		ether type arp accept
		icmpv6 type nd-neighbor-solicit accept
		icmpv6 type nd-neighbor-advert accept
		meta mark & 0x01000000 == 0x01000000 accept
		ip saddr . ip daddr . meta l4proto . th dport @links4 accept
		ip6 saddr . ip6 daddr . meta l4proto . th dport @links6 accept
		tcp flags syn / syn,ack counter name "drop-icc" drop
		ip saddr . ip daddr . meta l4proto . th sport @links4-reply accept
		ip6 saddr . ip6 daddr . meta l4proto . th sport @links6-reply accept
		counter name "drop-icc" drop
	}
}
`
