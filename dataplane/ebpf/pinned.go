package ebpf

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/portcullis/portcullis/dataplane"
)

// Pinned is the datapath's maps as a backend pinned them, opened read-only:
// what pcctl reads flows, drops and fill levels from while the agent is
// down. It loads and attaches nothing, and changes no map.
type Pinned struct {
	dir  string
	maps map[string]*ebpf.Map
}

// OpenPinned opens every map pinned in the maps directory of pinDir (the
// agent's -bpffs directory) read-only. When nothing is pinned there the
// error wraps fs.ErrNotExist.
func OpenPinned(pinDir string) (*Pinned, error) {
	dir := pinPaths{pinDir}.maps()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pinned maps in %s: %w", dir, err)
	}
	p := &Pinned{dir: dir, maps: map[string]*ebpf.Map{}}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), "-resized") {
			continue // a replacement being pinned (migratePins)
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("open pinned map %s: %w", filepath.Join(dir, e.Name()), err)
		}
		p.maps[pinName(e.Name())] = m // an older agent's pins under their names now
	}
	if len(p.maps) == 0 {
		return nil, fmt.Errorf("pinned maps in %s: %w", dir, fs.ErrNotExist)
	}
	return p, nil
}

// Dir is the directory the maps are pinned in.
func (p *Pinned) Dir() string { return p.dir }

// Close closes the maps; the pins stay.
func (p *Pinned) Close() error {
	closeMaps(p.maps)
	p.maps = nil
	return nil
}

// need returns the named maps, or an error naming the first one missing.
func (p *Pinned) need(names ...string) (map[string]*ebpf.Map, error) {
	out := map[string]*ebpf.Map{}
	for _, n := range names {
		m, ok := p.maps[n]
		if !ok {
			return nil, fmt.Errorf("no %s pinned in %s: is this pcctl as new as the agent that pinned the maps?", n, p.dir)
		}
		out[n] = m
	}
	return out, nil
}

// Flows returns the flows that f selects, as Backend.Flows does.
func (p *Pinned) Flows(ctx context.Context, f dataplane.FlowFilter) ([]dataplane.Flow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ms, err := p.need(mapFlows4, mapFlows6, mapTrack6)
	if err != nil {
		return nil, err
	}
	return listFlows(f, func(visit func(dataplane.Flow) bool) (int, error) {
		return walkFlowMaps(ms, func(fl dataplane.Flow) bool {
			visit(fl)
			return false // read-only: never delete
		})
	})
}

// Drops returns the drop counters as Backend.Drops does. endpoint names the
// endpoint whose host veth has the ifindex, or "" (the backend knows them
// from its applied state; a reader without it looks the veths up).
func (p *Pinned) Drops(ctx context.Context, endpoint func(ifindex uint32) string) ([]dataplane.Drop, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ms, err := p.need(mapDrops)
	if err != nil {
		return nil, err
	}
	counts, err := readDrops(ms[mapDrops])
	if err != nil {
		return nil, err
	}
	return sumDrops(counts, endpoint), nil
}

// Fill returns the fill levels as Backend.Fill does, every map counted by
// walking its keys.
func (p *Pinned) Fill() []dataplane.TableFill {
	maps := map[string]*ebpf.Map{}
	for name, m := range p.maps {
		if hasFill(m) {
			maps[name] = m
		}
	}
	return fillOf(maps, nil)
}

// Events returns the datapath's event counters (pc_stats), as the
// backend's status shows them.
func (p *Pinned) Events() (map[string]uint64, error) {
	ms, err := p.need(mapStats)
	if err != nil {
		return nil, err
	}
	return readStats(ms[mapStats])
}

// IsNotPinned reports whether err from OpenPinned means nothing is pinned.
func IsNotPinned(err error) bool { return errors.Is(err, fs.ErrNotExist) }
