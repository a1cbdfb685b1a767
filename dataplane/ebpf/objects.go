package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

// Config is the datapath's runtime configuration. It goes into the
// programs' .rodata before they are loaded (the verifier sees constants).
type Config struct {
	// NATPortMin and NATPortMax bound the source ports (and ICMP echo ids)
	// that SNAT picks when a flow's own port is taken or is one of the
	// node's ephemeral ports. The range must lie outside those.
	NATPortMin, NATPortMax uint16
	// LocalPortMin and LocalPortMax are the node's ephemeral ports
	// (net.ipv4.ip_local_port_range), where its own connections take their
	// source ports without knowing of the datapath's flows: a translated
	// flow never keeps a source port of this range, so the two never share
	// a reply tuple. LocalPorts reads them from the running kernel.
	LocalPortMin, LocalPortMax uint16
	// NATRetries is how many random ports are tried after the original one
	// (at most 32).
	NATRetries uint32
	// Timeouts of connection-tracking entries.
	TCPSynTimeout, TCPEstablishedTimeout, TCPCloseTimeout, OtherTimeout time.Duration
	// NoFIBLocal stops the programs from asking the FIB whether an address
	// is the node's; only the addresses the agent knows (uplinks, gateways,
	// SNAT addresses) then answer on wildcard published ports. Tests set it
	// so results do not depend on the machine's routes.
	NoFIBLocal bool
	// FastPath sends translated traffic from the uplink straight into the
	// container (bpf_redirect_peer) and container traffic that the FIB
	// routes to an uplink straight there (bpf_redirect / redirect_neigh),
	// skipping the bridge, the IP input path and netfilter.
	FastPath bool
	// HelperChecksums keeps the L4 checksum updates of TCP and UDP with
	// bpf_l4_csum_replace, one call per changed field, even where the
	// programs could compute them in the store that rewrites the headers
	// (Linux 6.2 and a kernel BTF; see PC_CFG_CSUM_DIRECT). For
	// comparisons and tests.
	HelperChecksums bool
	// CoarseClock keeps the programs' clock on bpf_ktime_get_coarse_ns,
	// a helper call per packet, instead of the inlined bpf_jiffies64
	// (see tickClock). For comparisons and tests.
	CoarseClock bool
	// Maps sizes the maps; a zero field takes DefaultMapSizes' value.
	Maps MapSizes
}

// MapSizes are the max entries of the maps. Configuration maps (published
// ports, endpoints, links, networks) are allocated as they fill
// (BPF_F_NO_PREALLOC, LPM tries), so their limits cost little until used:
// about 100 to 200 bytes per entry present, and for hashes 16 bytes per
// slot of bucket array. The state maps are preallocated, as the datapath
// inserts into them: their sizes are memory taken at load, 112 bytes per
// pc_flows4 entry, 120 per pc_track6 and 160 per pc_flows6 entry (hash element, key,
// value, bucket), so the defaults take about 96 MB, and all maps 113 MB. A
// size changed between two agents is applied at the next start: the pinned
// map is replaced by one of the new size and its entries are copied over
// (see migratePins).
type MapSizes struct {
	// CT is pc_flows4: two entries per IPv4 flow (connection tracking and NAT
	// in one). Default 524288, 262144 flows: the nf_conntrack_max a large
	// host gets by default, and cilium's default for its own TCP table.
	CT uint32
	// CT6 is pc_track6: one entry per IPv6 flow a container of a network
	// without masquerade (or a link's parent) opened. Default 131072.
	CT6 uint32
	// NAT6 is pc_flows6: two entries per IPv6 published-port or
	// masqueraded flow. Default 131072.
	NAT6 uint32
	// Ports is pc_ports and pc_ports6, each: one entry per aligned block
	// of a mapping's host ports (one for a single port, at most 30 for a
	// range). Default 262144.
	Ports uint32
	// Endpoints is pc_endpoints, pc_ep_macs, pc_local_addrs and
	// pc_local_addrs6 (SNAT addresses may be per endpoint); pc_ep_addrs
	// holds twice as many (IPv4 and IPv6). Default 131072.
	Endpoints uint32
	// Links is pc_links: one entry per exposed port of a linked child, and
	// one per linked pair. Default 131072.
	Links uint32
	// Networks is pc_networks; pc_subnets holds twice as many. Default 4096.
	Networks uint32
}

// DefaultMapSizes are the sizes the agent uses.
func DefaultMapSizes() MapSizes {
	return MapSizes{CT: 524288, CT6: 131072, NAT6: 131072, Ports: 262144, Endpoints: 131072, Links: 131072, Networks: 4096}
}

// withDefaults fills the zero fields.
func (s MapSizes) withDefaults() MapSizes {
	d := DefaultMapSizes()
	for _, f := range []struct{ v, def *uint32 }{
		{&s.CT, &d.CT}, {&s.CT6, &d.CT6}, {&s.NAT6, &d.NAT6}, {&s.Ports, &d.Ports},
		{&s.Endpoints, &d.Endpoints}, {&s.Links, &d.Links}, {&s.Networks, &d.Networks},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return s
}

// byMap gives the max entries of every map it sizes, by map name.
func (s MapSizes) byMap() map[string]uint32 {
	s = s.withDefaults()
	return map[string]uint32{
		mapFlows4: s.CT, mapTrack6: s.CT6, mapFlows6: s.NAT6,
		mapPorts: s.Ports, mapPorts6: s.Ports,
		mapEndpoints: s.Endpoints, mapEpMACs: s.Endpoints, mapEpAddrs: 2 * s.Endpoints,
		mapLocalAddrs: s.Endpoints, mapLocalAddrs6: s.Endpoints,
		mapLinks: s.Links, mapNetworks: s.Networks, mapSubnets: 2 * s.Networks,
	}
}

// DefaultConfig returns the configuration the agent starts from (it reads
// the node's ephemeral ports and sets the SNAT range outside them).
func DefaultConfig() Config {
	return Config{
		NATPortMin:            1024,
		NATPortMax:            32767,
		LocalPortMin:          32768, // Linux's default ip_local_port_range
		LocalPortMax:          60999,
		NATRetries:            16,
		TCPSynTimeout:         60 * time.Second,
		TCPEstablishedTimeout: 6 * time.Hour,
		TCPCloseTimeout:       10 * time.Second,
		OtherTimeout:          60 * time.Second,
	}
}

// Validate says what is wrong with c, if anything: the port ranges and
// the retries. New refuses an invalid configuration.
func (c Config) Validate() error {
	if c.NATPortMin == 0 || c.NATPortMax < c.NATPortMin {
		return fmt.Errorf("nat port range %d-%d: want 1 <= min <= max", c.NATPortMin, c.NATPortMax)
	}
	if c.LocalPortMax < c.LocalPortMin {
		return fmt.Errorf("local port range %d-%d: want min <= max", c.LocalPortMin, c.LocalPortMax)
	}
	if c.NATPortMin <= c.LocalPortMax && c.LocalPortMin <= c.NATPortMax {
		return fmt.Errorf("nat port range %d-%d overlaps the node's ephemeral ports %d-%d (net.ipv4.ip_local_port_range): "+
			"the node's own connections would share reply tuples with translated flows", c.NATPortMin, c.NATPortMax, c.LocalPortMin, c.LocalPortMax)
	}
	if c.NATRetries > 32 {
		return fmt.Errorf("nat retries %d: at most 32", c.NATRetries)
	}
	return nil
}

func (c Config) rodata() (bpfPcConfig, error) {
	if err := c.Validate(); err != nil {
		return bpfPcConfig{}, err
	}
	secs := func(d time.Duration) uint32 { return uint32(d / time.Second) }
	r := bpfPcConfig{
		NatPortMin:      c.NATPortMin,
		NatPortMax:      c.NATPortMax,
		NatRetries:      c.NATRetries,
		LocalPortMin:    c.LocalPortMin,
		LocalPortMax:    c.LocalPortMax,
		TcpSynTimeout:   secs(c.TCPSynTimeout),
		TcpEstTimeout:   secs(c.TCPEstablishedTimeout),
		TcpCloseTimeout: secs(c.TCPCloseTimeout),
		OtherTimeout:    secs(c.OtherTimeout),
	}
	if !c.NoFIBLocal {
		r.Flags |= cfgFIBLocal
	}
	if c.FastPath {
		r.Flags |= cfgFastPath
	}
	return r, nil
}

// Program names, as in the C sources.
const (
	progEndpointIngress = "pc_endpoint_ingress"
	progUplinkIngress   = "pc_uplink_ingress"
	progUplinkEgress    = "pc_uplink_egress"
)

// datapath is the loaded programs and their shared maps.
type datapath struct {
	progs map[string]*ebpf.Program
	maps  map[string]*ebpf.Map
	// checksums says how the programs update TCP and UDP checksums.
	checksums skbChecksum
	// clock says how they tell the time.
	clock tickClock
}

// Close releases the file descriptors. Pinned objects stay in the kernel.
func (d *datapath) Close() {
	for _, p := range d.progs {
		p.Close()
	}
	for _, m := range d.maps {
		m.Close()
	}
}

// loadOptions tune loadDatapath.
type loadOptions struct {
	// mapPinDir: maps are pinned there by name and reused when present,
	// which is how flows survive an agent restart or upgrade. Empty: no pins.
	mapPinDir string
	// logLevel for the verifier (ebpf.LogLevelStats in the verifier test).
	logLevel ebpf.LogLevel
	// log receives what migratePins did (nil: nowhere).
	log *slog.Logger
}

// loadDatapath loads both program families. The endpoint object is loaded
// first; its maps are handed to the uplink object so the two share one
// instance of every map (they are declared alike in bpf/lib/maps.h).
func loadDatapath(cfg Config, lo loadOptions) (*datapath, error) {
	rodata, err := cfg.rodata()
	if err != nil {
		return nil, err
	}
	csum := skbChecksum{err: errors.New("turned off in the configuration")}
	if !cfg.HelperChecksums {
		csum = kernelChecksum()
	}
	if csum.err == nil {
		rodata.Flags |= cfgCsumDirect
		rodata.IpSummedOff, rodata.IpSummedShift = csum.off, csum.shift
	}
	clock := tickClock{err: errors.New("turned off in the configuration")}
	if !cfg.CoarseClock {
		clock = kernelClock()
	}
	if clock.err == nil {
		rodata.TickNs, rodata.ClockOffset = clock.tickNs, clock.offset
	}
	epSpec, err := loadBpf()
	if err != nil {
		return nil, err
	}
	upSpec, err := loadUplink()
	if err != nil {
		return nil, err
	}
	for _, s := range []*ebpf.CollectionSpec{epSpec, upSpec} {
		v, ok := s.Variables["CONFIG"]
		if !ok {
			return nil, errors.New("object has no CONFIG variable")
		}
		if err := v.Set(rodata); err != nil {
			return nil, fmt.Errorf("set CONFIG: %w", err)
		}
		for name, n := range cfg.Maps.byMap() {
			m, ok := s.Maps[name]
			if !ok {
				return nil, fmt.Errorf("object has no map %s", name)
			}
			m.MaxEntries = n
		}
	}
	progOpts := ebpf.ProgramOptions{LogLevel: lo.logLevel}
	epOpts := &ebpf.CollectionOptions{Programs: progOpts}
	if lo.mapPinDir != "" {
		for name, m := range epSpec.Maps {
			if !strings.HasPrefix(name, ".") {
				m.Pinning = ebpf.PinByName
			}
		}
		epOpts.Maps.PinPath = lo.mapPinDir
		if err := renamePins(lo.mapPinDir, logOrDiscard(lo.log)); err != nil {
			return nil, err
		}
		if err := migratePins(epSpec, lo.mapPinDir, lo.log); err != nil {
			return nil, err
		}
	}
	epColl, err := ebpf.NewCollectionWithOptions(epSpec, *epOpts)
	if err != nil {
		return nil, fmt.Errorf("load endpoint programs: %w", verifierDetail(err))
	}
	defer epColl.Close()

	repl := map[string]*ebpf.Map{}
	for name := range upSpec.Maps {
		if strings.HasPrefix(name, ".") {
			continue
		}
		m, ok := epColl.Maps[name]
		if !ok {
			return nil, fmt.Errorf("map %s of the uplink object is missing in the endpoint object", name)
		}
		repl[name] = m
	}
	upColl, err := ebpf.NewCollectionWithOptions(upSpec, ebpf.CollectionOptions{Programs: progOpts, MapReplacements: repl})
	if err != nil {
		return nil, fmt.Errorf("load uplink programs: %w", verifierDetail(err))
	}
	defer upColl.Close()

	d := &datapath{progs: map[string]*ebpf.Program{}, maps: map[string]*ebpf.Map{}, checksums: csum, clock: clock}
	for name, m := range epColl.Maps {
		if strings.HasPrefix(name, ".") {
			continue
		}
		if d.maps[name], err = m.Clone(); err != nil {
			d.Close()
			return nil, err
		}
	}
	for _, c := range []*ebpf.Collection{epColl, upColl} {
		for name, p := range c.Programs {
			if d.progs[name], err = p.Clone(); err != nil {
				d.Close()
				return nil, err
			}
		}
	}
	return d, nil
}

// verifierDetail puts the whole verifier log into the error message: the
// last lines alone rarely say which path failed.
func verifierDetail(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w\n%+v", err, ve)
	}
	return err
}

// pinPaths are the directories under the backend's bpffs directory.
type pinPaths struct{ root string }

func (p pinPaths) maps() string  { return filepath.Join(p.root, "maps") }
func (p pinPaths) progs() string { return filepath.Join(p.root, "progs") }
func (p pinPaths) links() string { return filepath.Join(p.root, "links") }
