package ebpf

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

// Config is the datapath's runtime configuration. It goes into the
// programs' .rodata before they are loaded (the verifier sees constants).
type Config struct {
	// NATPortMin and NATPortMax bound the source ports (and ICMP echo ids)
	// that SNAT picks when a flow's own port is taken.
	NATPortMin, NATPortMax uint16
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
	// CTMaxEntries sizes the connection-tracking map (two entries per flow);
	// 0 keeps the default of 262144.
	CTMaxEntries uint32
}

// DefaultConfig returns the configuration the agent uses.
func DefaultConfig() Config {
	return Config{
		NATPortMin:            32768,
		NATPortMax:            60999,
		NATRetries:            16,
		TCPSynTimeout:         60 * time.Second,
		TCPEstablishedTimeout: 6 * time.Hour,
		TCPCloseTimeout:       10 * time.Second,
		OtherTimeout:          60 * time.Second,
	}
}

func (c Config) rodata() (endpointPcConfig, error) {
	if c.NATPortMin == 0 || c.NATPortMax < c.NATPortMin {
		return endpointPcConfig{}, fmt.Errorf("nat port range %d-%d: want 1 <= min <= max", c.NATPortMin, c.NATPortMax)
	}
	if c.NATRetries > 32 {
		return endpointPcConfig{}, fmt.Errorf("nat retries %d: at most 32", c.NATRetries)
	}
	secs := func(d time.Duration) uint32 { return uint32(d / time.Second) }
	r := endpointPcConfig{
		NatPortMin:      c.NATPortMin,
		NatPortMax:      c.NATPortMax,
		NatRetries:      c.NATRetries,
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
}

// loadDatapath loads both program families. The endpoint object is loaded
// first; its maps are handed to the uplink object so the two share one
// instance of every map (they are declared alike in bpf/lib/maps.h).
func loadDatapath(cfg Config, lo loadOptions) (*datapath, error) {
	rodata, err := cfg.rodata()
	if err != nil {
		return nil, err
	}
	epSpec, err := loadEndpoint()
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
		if cfg.CTMaxEntries > 0 {
			s.Maps["pc_ct"].MaxEntries = cfg.CTMaxEntries
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

	d := &datapath{progs: map[string]*ebpf.Program{}, maps: map[string]*ebpf.Map{}}
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
