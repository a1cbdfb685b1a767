package bench

import (
	"errors"
	"fmt"
	"time"
)

// mode is one dataplane under test. Every method runs against a fresh
// instance (namespaces made for this mode, this N and this round only).
type mode interface {
	name() string
	// describe says what the mode installs, for the report.
	describe() string
	// check says why the mode cannot run on this machine (a missing tool),
	// before any namespace is made; nil when it can.
	check(e *env) error
	// setup builds the bridge, the containers and the dataplane with
	// in.n filler mappings published ahead of the measured ones, and sets
	// in.echoDst and in.iperfDst. It returns the time the bulk programming
	// of all those mappings took (0 when the mode has nothing to program).
	// An *unavailableError means the mode cannot run at all here.
	setup(in *instance) (time.Duration, error)
	// program publishes ms the mode's own way, one mapping or one
	// container at a time: Docker's one iptables (or nft) call per rule,
	// our API's one PUT per mapping, CNI's one ADD per container.
	program(in *instance, ms []Mapping) error
	// footprint returns memory and ruleset size metrics.
	footprint(in *instance) map[string]float64
}

// footprintMaxN is the largest N at which the reference modes list their
// ruleset for its size: a netlink dump of 100,000s of rules takes minutes
// on this kernel (every dump chunk walks the chain from its start).
const footprintMaxN = 10000

// limitedMode is a mode that cannot be set up above some N in reasonable
// time.
type limitedMode interface {
	maxN() (int, string)
}

// unavailableError marks a mode that cannot run on this machine or build:
// it is reported as such and not tried again in later rounds.
type unavailableError struct{ err error }

func (u *unavailableError) Error() string { return u.err.Error() }
func (u *unavailableError) Unwrap() error { return u.err }

func unavailable(format string, args ...any) error {
	return &unavailableError{fmt.Errorf(format, args...)}
}

func isUnavailable(err error) bool {
	var u *unavailableError
	return errors.As(err, &u)
}

// newMode returns the mode called name.
func newMode(name string) (mode, error) {
	switch name {
	case "none":
		return noneMode{}, nil
	case "iptables-legacy":
		return &iptablesMode{variant: "legacy"}, nil
	case "iptables-nft":
		return &iptablesMode{variant: "nft"}, nil
	case "docker-nftables":
		return &dockerNftMode{}, nil
	case "cni-bridge-portmap":
		return &cniMode{}, nil
	case "nftables", "ebpf":
		return &agentMode{backend: name}, nil
	}
	return nil, fmt.Errorf("unknown mode %q: choose from %v", name, AllModes)
}

// noneMode is the kernel's own floor: bridge and routing, no netfilter at
// all. There is no NAT, so the external host routes the container subnet
// via the node and reaches c1's own address and ports: the same forwarding
// path (uplink, routing, bridge, veth) minus conntrack, NAT and filtering.
type noneMode struct{}

func (noneMode) name() string { return "none" }

func (noneMode) describe() string {
	return "bridge and routing only, no netfilter (bridge-nf-call-iptables=0); the external host routes 172.17.0.0/16 via the node and reaches c1:80 and c1:5201 directly"
}

func (noneMode) check(*env) error { return nil }

func (noneMode) setup(in *instance) (time.Duration, error) {
	in.plumb()
	in.topo.ExtRoute(subnet, nodeAddr())
	for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"} {
		if err := in.topo.Node.SetSysctl(k, "0"); err != nil {
			in.note("%v (no br_netfilter: nothing to turn off)", err)
		}
	}
	in.echoDst = addrPort(in.c1IP, echoPort)
	in.iperfDst = addrPort(in.c1IP, iperfPort)
	return 0, nil
}

// program is a no-op: without NAT there is nothing to publish.
func (noneMode) program(*instance, []Mapping) error { return errNothingToProgram }

func (noneMode) footprint(*instance) map[string]float64 { return nil }

// errNothingToProgram is what a mode without mappings answers to program.
var errNothingToProgram = errors.New("nothing to program")
