package bench

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/dataplane/store"
	"github.com/portcullis/portcullis/internal/nstest"
)

// agentMode is one of our backends, driven like a runtime drives it:
// portcullisd in the node namespace (nstest.StartAgent --backend B), the
// network, endpoints and mappings through the API.
//
// Bulk programming is the agent's own bulk path: the state directory is
// written with the network, both endpoints and all N+3 mappings while the
// agent is stopped, and the agent is started; the time is the full sync it
// logs (the kernel programming), or its whole start when the log has none.
type agentMode struct {
	backend string
}

// agentState is one instance's agent.
type agentState struct {
	agent  *nstest.Agent
	client *api.Client
}

func (m *agentMode) name() string { return m.backend }

func (m *agentMode) describe() string {
	return fmt.Sprintf("portcullisd --backend=%s in the node namespace; network pc0 172.17.0.0/16 and both containers as endpoints; "+
		"bulk programming by starting the agent on a state directory holding all mappings (its full sync), "+
		"a mapping added with one PUT /v1/ports/{id}", m.backend)
}

func (m *agentMode) check(e *env) error {
	if e.agentErr != nil {
		return e.agentErr
	}
	return nil
}

func (m *agentMode) setup(in *instance) (time.Duration, error) {
	st := &agentState{}
	in.modeState = st
	// A backend that cannot start (the eBPF one before it lands) makes
	// the whole mode unavailable, not just this instance.
	err := in.tb.run(func() error {
		st.agent = nstest.StartAgent(in.tb, in.topo.Node, nstest.AgentOptions{Backend: m.backend, Binary: in.env.agent})
		return nil
	})
	if err != nil {
		return 0, unavailable("portcullisd --backend=%s does not start: %s", m.backend, agentReason(err.Error()))
	}
	st.client = api.NewClient(st.agent.Socket)
	if err := st.agent.Stop(); err != nil {
		return 0, fmt.Errorf("stop the empty agent: %w", err)
	}
	if err := writeAgentState(st.agent.StateDir, in); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := st.agent.Start(); err != nil {
		return 0, fmt.Errorf("portcullisd --backend=%s does not start with %d mappings: %s", m.backend, in.n+3, agentReason(err.Error()))
	}
	took := time.Since(start)
	if d, ok := fullSyncTook(st.agent.Logs()); ok {
		in.note("agent start with %d mappings took %v, of which full sync %v", in.n+3, took.Round(time.Millisecond), d)
		took = d
	}
	in.waitContainers()
	return took, nil
}

// agentReason picks the agent's own last words ("portcullisd: ...") out of
// nstest's error, which carries the whole log; the rest stays in the log.
func agentReason(msg string) string {
	if i := strings.LastIndex(msg, "\nportcullisd: "); i >= 0 {
		return strings.TrimSpace(msg[i:])
	}
	return msg
}

// writeAgentState writes the agent's snapshot: the default network, c1 and
// c2 as netns endpoints, the fillers and then the measured mappings.
func writeAgentState(dir string, in *instance) error {
	s := model.NewState()
	s.Networks["bench"] = model.Network{Name: "bench", Bridge: bridgeName, Subnet: subnet, Gateway: gateway}
	for _, c := range []struct {
		id string
		ns *nstest.NS
	}{{"c1", in.c1}, {"c2", in.c2}} {
		ip := in.c1IP
		if c.id == "c2" {
			ip = in.c2IP
		}
		s.Endpoints[c.id] = model.Endpoint{ID: c.id, Network: "bench", IP: ip.String(), Netns: c.ns.Path}
	}
	for _, mp := range append(fillerMappings(in.n, in.c2IP), measuredMappings(in.c1IP)...) {
		s.Ports[mp.ID] = modelPort(mp)
	}
	// Resolve it as the agent will, so a refusal shows here, not as an
	// agent that does not start.
	if _, err := model.Load(s); err != nil {
		return fmt.Errorf("benchmark state: %w", err)
	}
	st, err := store.Open(dir)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Compact(s)
}

func modelPort(m Mapping) model.PortMapping {
	return model.PortMapping{ID: m.ID, Endpoint: m.Container, Proto: m.Proto, HostPort: m.HostPort, Port: m.Port}
}

// fullSyncLine matches the reconciler's log line `msg="full sync" ...
// took=1.234s` (slog text).
var fullSyncLine = regexp.MustCompile(`msg="full sync".* took=([0-9.]+[a-zµ]+)`)

func fullSyncTook(logs string) (time.Duration, bool) {
	all := fullSyncLine.FindAllStringSubmatch(logs, -1)
	if len(all) == 0 {
		return 0, false
	}
	d, err := time.ParseDuration(all[len(all)-1][1])
	return d, err == nil
}

func (m *agentMode) program(in *instance, ms []Mapping) error {
	st := in.modeState.(*agentState)
	for _, mp := range ms {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := st.client.PutPort(ctx, modelPort(mp))
		cancel()
		if err != nil {
			return fmt.Errorf("PUT /v1/ports/%s: %w", mp.ID, err)
		}
	}
	return nil
}

func (m *agentMode) footprint(in *instance) map[string]float64 {
	st := in.modeState.(*agentState)
	out := map[string]float64{}
	if pid, err := findAgent(st.agent.Socket); err != nil {
		in.note("footprint: %v", err)
	} else {
		mem, err := processMemory(pid)
		if err != nil {
			in.note("footprint: %v", err)
		}
		out[mRSS] = float64(mem.RSS) / (1 << 20)
		if mem.Maps > 0 {
			out[mBPFMem] = float64(mem.BPFMemlock) / 1024
		}
	}
	if m.backend == "nftables" {
		for k, v := range nftFootprint(in) {
			out[k] = v
		}
	}
	return out
}
