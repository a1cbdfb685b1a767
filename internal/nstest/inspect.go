package nstest

import (
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Footprint is what a dataplane left in a namespace and a bpffs directory.
type Footprint struct {
	// NftTables are "family name" of every nftables table.
	NftTables []string
	// Interfaces are the names of every interface.
	Interfaces []string
	// Pinned are the files (pinned programs, maps, links) under the bpffs
	// directory, except the kernel's own maps.debug and progs.debug.
	Pinned []string
	// TCFilters are "ifname direction: filter line" of every tc filter on a
	// clsact ingress or egress hook.
	TCFilters []string
	// TCX are "ifname tcx_ingress|tcx_egress prog ID" of every program
	// attached through tcx.
	TCX []string
}

// Inspect lists the footprint of ns (and of bpffs, when not empty).
func Inspect(ns *NS, bpffs string) (Footprint, error) {
	var f Footprint
	out, err := ns.Exec("nft", "list", "tables")
	if err != nil {
		return f, err
	}
	for _, l := range strings.Split(out, "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(l), "table "); ok {
			f.NftTables = append(f.NftTables, t)
		}
	}
	var ifs []net.Interface
	if err := ns.Do(func() error {
		var err error
		ifs, err = net.Interfaces()
		return err
	}); err != nil {
		return f, err
	}
	for _, ifi := range ifs {
		f.Interfaces = append(f.Interfaces, ifi.Name)
		for _, dir := range []string{"ingress", "egress"} {
			out, _ := ns.Exec("tc", "filter", "show", "dev", ifi.Name, dir)
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if l != "" {
					f.TCFilters = append(f.TCFilters, fmt.Sprintf("%s %s: %s", ifi.Name, dir, l))
				}
			}
		}
		tcx, err := tcxPrograms(ns, ifi)
		if err != nil {
			return f, err
		}
		f.TCX = append(f.TCX, tcx...)
	}
	if bpffs != "" {
		filepath.WalkDir(bpffs, func(p string, d fs.DirEntry, err error) error {
			// Every bpffs instance starts with the kernel's preloaded
			// iterators (bpf_preload) at its root: not ours.
			if filepath.Dir(p) == bpffs && (d.Name() == "maps.debug" || d.Name() == "progs.debug") {
				return nil
			}
			if err == nil && !d.IsDir() {
				f.Pinned = append(f.Pinned, p)
			}
			return nil
		})
	}
	return f, nil
}

// tcxPrograms queries the tcx hooks of an interface; a kernel without tcx
// has nothing attached there.
func tcxPrograms(ns *NS, ifi net.Interface) ([]string, error) {
	var out []string
	err := ns.Do(func() error {
		for _, at := range []struct {
			name string
			typ  ebpf.AttachType
		}{{"tcx_ingress", ebpf.AttachTCXIngress}, {"tcx_egress", ebpf.AttachTCXEgress}} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: ifi.Index, Attach: at.typ})
			if err != nil {
				continue // no tcx in this kernel
			}
			for _, p := range res.Programs {
				out = append(out, fmt.Sprintf("%s %s prog %d", ifi.Name, at.name, p.ID))
			}
		}
		return nil
	})
	return out, err
}
