package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/ctflows"
	"github.com/portcullis/portcullis/dataplane/ebpf"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/dataplane/nft"
	"github.com/portcullis/portcullis/dataplane/store"
)

// When the agent does not answer, the read-only commands read what it left
// behind instead: the state directory (networks, endpoints, ports, links),
// the pinned maps of the eBPF datapath, and the nft tables and conntrack
// table of the current network namespace. They change nothing there.

// agentDown reports whether err says that no agent listens on the socket:
// the socket file is missing, or nothing accepts on it. An error the agent
// answered with is not one.
func agentDown(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// offline tells the user, on stderr, that the agent did not answer and
// where the command reads instead.
func (c *cli) offline(what string) {
	fmt.Fprintf(c.env.Stderr, "pcctl: portcullisd not answering on %s; reading %s directly (read-only)\n", c.socket, what)
}

// needAgent turns "nobody answers on the socket" into an error that says
// the command needs the agent. Other errors pass unchanged.
func (c *cli) needAgent(name string, err error) error {
	if err == nil || !agentDown(err) {
		return err
	}
	return fmt.Errorf("portcullisd is not running (no answer on %s): %s changes the dataplane and needs the agent; start it (systemctl start portcullisd). Read-only commands work without it", c.socket, name)
}

// readState reads the desired state from the state directory, as the
// agent would load it at start, and says on stderr what a torn journal
// line it leaves out held. An agent that holds the directory but does not
// answer is named: reading under it could see a compaction half done.
func (c *cli) readState() (*model.Resolved, error) {
	want, torn, err := store.ReadResolved(c.stateDir)
	if errors.Is(err, store.ErrInUse) {
		return nil, fmt.Errorf("read the state in %s (-state-dir): %w; it does not answer on %s: it is still starting (loading the state, first sync) or listens on another socket (-socket, PORTCULLIS_SOCKET)",
			c.stateDir, err, c.socket)
	}
	if err != nil {
		return nil, fmt.Errorf("read the state in %s (-state-dir): %w", c.stateDir, err)
	}
	for _, t := range torn {
		fmt.Fprintf(c.env.Stderr, "pcctl: left out %s: an append cut short by a crash, never acknowledged; the agent cuts it off when it starts\n", t)
	}
	return want, nil
}

// stateRows is listOf's answer from the state directory: the API's rows,
// through JSON as the agent's are.
func (c *cli) stateRows(kind string) ([]map[string]any, error) {
	c.offline("the state in " + c.stateDir)
	want, err := c.readState()
	if err != nil {
		return nil, err
	}
	var rows []map[string]any
	return rows, viaJSON(api.List(want, strings.TrimSuffix(kind, "s")), &rows)
}

// viaJSON gives out what the agent's JSON encoding of v decodes to, so an
// answer read directly prints exactly as the agent's.
func viaJSON(v, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// kernel is what the agent left in the kernel: pinned maps, nft tables.
type kernel struct {
	bpffs  string
	pins   *ebpf.Pinned // nil: nothing pinned (or pinErr)
	pinErr error        // opening the pins failed for another reason
	modes  []nft.Mode   // whose tables exist in this network namespace
	nftErr error
}

// inspect opens what the kernel holds; close it after.
func (c *cli) inspect() *kernel {
	k := &kernel{bpffs: c.bpffs}
	k.pins, k.pinErr = ebpf.OpenPinned(c.bpffs)
	if ebpf.IsNotPinned(k.pinErr) {
		k.pinErr = nil
	}
	k.modes, k.nftErr = nft.InstalledModes()
	return k
}

func (k *kernel) close() {
	if k.pins != nil {
		k.pins.Close()
	}
}

func (k *kernel) has(m nft.Mode) bool {
	for _, h := range k.modes {
		if h == m {
			return true
		}
	}
	return false
}

// backend names the backend whose objects are installed: nftables when its
// tables exist (a full sync of it deletes the eBPF companion's table, but
// pins left by an earlier eBPF run may remain), else ebpf when maps are
// pinned, else "".
func (k *kernel) backend() string {
	switch {
	case k.has(nft.ModeFull):
		return nft.ModeFull.Name()
	case k.pins != nil:
		return "ebpf"
	}
	return ""
}

// none is the error of a command that finds nothing installed.
func (k *kernel) none() error {
	errs := []error{fmt.Errorf("no dataplane installed here: no maps pinned in %s (-bpffs) and no nft table %s in this network namespace",
		filepath.Join(k.bpffs, "maps"), nft.TableName)}
	return errors.Join(append(errs, k.pinErr, k.nftErr)...)
}

// offlineFlows lists the flows of the installed backend: the pinned
// conntrack maps of the eBPF datapath, or the kernel's conntrack table
// that the nftables backend uses.
func (c *cli) offlineFlows(ctx context.Context, f dataplane.FlowFilter) ([]dataplane.Flow, error) {
	k := c.inspect()
	defer k.close()
	switch k.backend() {
	case "ebpf":
		c.offline("the pinned conntrack maps in " + k.pins.Dir())
		return k.pins.Flows(ctx, f)
	case nft.ModeFull.Name():
		c.offline("the kernel's conntrack table")
		return ctflows.List(ctx, f)
	}
	return nil, k.none()
}

// offlineDrops reads the drop counters of the installed backend: pc_drops,
// with the drops of the companion's table, for the eBPF datapath; the named
// counters of the tables for nftables.
func (c *cli) offlineDrops(ctx context.Context) ([]dataplane.Drop, error) {
	k := c.inspect()
	defer k.close()
	switch k.backend() {
	case "ebpf":
		what := "the pinned drop counters in " + k.pins.Dir()
		if k.has(nft.ModeLocal) {
			what += " and the counters of nft table " + nft.LocalTableName
		}
		c.offline(what)
		out, err := k.pins.Drops(ctx, c.endpointOfIfindex())
		if err != nil || !k.has(nft.ModeLocal) {
			return out, err
		}
		local, err := nft.ReadDrops(ctx, nft.ModeLocal)
		return append(out, local...), err
	case nft.ModeFull.Name():
		c.offline("the drop counters of nft tables " + strings.Join(nft.TableNames(nft.ModeFull), ", "))
		return nft.ReadDrops(ctx, nft.ModeFull)
	}
	return nil, k.none()
}

// endpointOfIfindex attributes a drop to the endpoint whose host veth has
// the ifindex, looking the veths of the state's endpoints up in this
// network namespace. Without the state no drop is attributed.
func (c *cli) endpointOfIfindex() func(uint32) string {
	byIndex := map[uint32]string{}
	want, err := c.readState()
	if err != nil {
		fmt.Fprintf(c.env.Stderr, "pcctl: drops are not attributed to endpoints: %v\n", err)
		return func(uint32) string { return "" }
	}
	for id, e := range want.Endpoints {
		if ifi, err := net.InterfaceByName(e.HostIfname); err == nil {
			byIndex[uint32(ifi.Index)] = id
		}
	}
	return func(ifindex uint32) string { return byIndex[ifindex] }
}

// offlineStatus is status without the agent: that it is not running, which
// backend's objects are in the kernel, the counts of the state directory,
// and the fill levels of the pinned maps. Keys are those of the agent's
// status where they mean the same.
func (c *cli) offlineStatus() (map[string]any, error) {
	c.offline("the state in " + c.stateDir + ", the pins in " + c.bpffs + " and the nft tables")
	k := c.inspect()
	defer k.close()
	st := map[string]any{
		"agent":     fmt.Sprintf("not running (no answer on %s)", c.socket),
		"state_dir": c.stateDir,
	}
	if want, err := c.readState(); err != nil {
		st["state_error"] = err.Error()
	} else {
		st["counts"] = map[string]int{
			"networks": len(want.Networks), "endpoints": len(want.Endpoints),
			"ports": len(want.Ports), "links": len(want.Links),
		}
	}
	if k.pinErr != nil {
		st["pins_error"] = k.pinErr.Error()
	}
	if k.nftErr != nil {
		st["nftables_error"] = k.nftErr.Error()
	}
	nftStatus := func(m nft.Mode) map[string]any {
		return map[string]any{"backend": m.Name(), "mode": m.String(), "tables": nft.TableNames(m)}
	}
	switch k.backend() {
	case "ebpf":
		bs := map[string]any{"backend": "ebpf", "pin_dir": c.bpffs}
		maps := map[string]any{}
		for _, f := range k.pins.Fill() {
			maps[f.Name] = map[string]any{"entries": f.Entries, "max_entries": f.Max}
		}
		bs["maps"] = maps
		if ev, err := k.pins.Events(); err == nil {
			bs["events"] = ev
		}
		reason := "installed in the kernel: maps pinned in " + k.pins.Dir()
		if k.has(nft.ModeLocal) {
			bs["companion_"+nft.ModeLocal.Name()] = nftStatus(nft.ModeLocal)
			reason += ", with the nftables-local companion (table inet " + nft.LocalTableName + ")"
		} else {
			reason += "; the nftables-local companion's table is missing"
		}
		st["backend"], st["backend_reason"], st["backend_status"] = "ebpf", reason, bs
	case nft.ModeFull.Name():
		reason := "installed in the kernel: nft tables " + strings.Join(nft.TableNames(nft.ModeFull), ", ")
		if k.pins != nil {
			reason += " (maps pinned in " + k.pins.Dir() + " are left from an earlier eBPF run)"
		}
		st["backend"], st["backend_reason"], st["backend_status"] = nft.ModeFull.Name(), reason, nftStatus(nft.ModeFull)
	default:
		st["backend"] = "none"
		st["backend_reason"] = fmt.Sprintf("nothing installed in the kernel: no maps pinned in %s, no nft table %s in this network namespace",
			filepath.Join(c.bpffs, "maps"), nft.TableName)
	}
	var out map[string]any
	return out, viaJSON(st, &out)
}
