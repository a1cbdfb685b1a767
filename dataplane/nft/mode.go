package nft

import "fmt"

// Mode selects how much of the dataplane the backend programs
// (Options.Mode). The two modes own different tables, and a full sync in
// either deletes the other's tables in the same transaction: they never
// coexist in a namespace, so switching the agent between the nftables
// backend and the eBPF backend leaves nothing stale behind.
type Mode int

const (
	// ModeFull (the zero value) is the whole dataplane: published ports for
	// every client, egress source translation, isolation of bridges, ICC and
	// anti-spoofing, in tables inet and bridge "portcullis" (TableName).
	// Backend.Name is "nftables".
	ModeFull Mode = iota
	// ModeLocal is the companion of a datapath that translates on tc hooks
	// (the eBPF backend), which traffic the node itself originates never
	// crosses. It programs only what that traffic needs, in table inet
	// "portcullis-local" (LocalTableName): the published-port maps, DNAT in
	// the output hook (B10), masquerade of the translated connections that
	// leave through a bridge so the container's answer comes back to the
	// node, the drop of 127.0.0.0/8 arriving from outside lo (B11), and
	// route_localnet. Nothing in forward, no bridge family table, no ICC,
	// no egress translation of container traffic. Backend.Name is
	// "nftables-local".
	ModeLocal
)

// LocalTableName is the name of the one table of ModeLocal (family inet).
const LocalTableName = "portcullis-local"

var modes = []Mode{ModeFull, ModeLocal}

// String returns "full" or "local", what ParseMode accepts.
func (m Mode) String() string {
	switch m {
	case ModeFull:
		return "full"
	case ModeLocal:
		return "local"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "full" (or "") and "local".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "full", "":
		return ModeFull, nil
	case "local":
		return ModeLocal, nil
	}
	return 0, fmt.Errorf("nftables mode %q: use full or local", s)
}

func (m Mode) valid() bool { return m == ModeFull || m == ModeLocal }

// table is the name of every table of the mode.
func (m Mode) table() string {
	if m == ModeLocal {
		return LocalTableName
	}
	return TableName
}

// name is Backend.Name in this mode.
func (m Mode) name() string {
	if m == ModeLocal {
		return "nftables-local"
	}
	return "nftables"
}

// others are the modes whose tables a full sync of m deletes.
func (m Mode) others() []Mode {
	var out []Mode
	for _, o := range modes {
		if o != m {
			out = append(out, o)
		}
	}
	return out
}

// modeSets is, per mode, the sets and maps its tables hold. An element of
// another set (a bridge-family set, in ModeLocal) is not programmed.
var modeSets = func() map[Mode]map[*setDef]bool {
	out := map[Mode]map[*setDef]bool{}
	for _, m := range modes {
		out[m] = map[*setDef]bool{}
		for _, t := range tables(m) {
			for _, s := range t.sets {
				out[m][s] = true
			}
		}
	}
	return out
}()

// holds reports whether the tables of m hold set s.
func (m Mode) holds(s *setDef) bool { return modeSets[m][s] }
