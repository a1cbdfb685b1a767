// Package api serves the controller API (spec/api.md) over a unix socket and
// provides the Go client that pcctl, the CNI plugin and the tests use.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/model"
)

// Server answers /v1 requests from one reconciler.
type Server struct {
	rec *dataplane.Reconciler
	// Info is merged into /v1/status: backend choice and reason, features.
	Info map[string]any
	// BodyTimeout is how long a client has to send a request body.
	BodyTimeout time.Duration
	// Health, when set, answers GET /healthz.
	Health http.Handler
	log    *slog.Logger
}

// NewServer returns a server for rec.
func NewServer(rec *dataplane.Reconciler, info map[string]any, log *slog.Logger) *Server {
	return &Server{rec: rec, Info: info, BodyTimeout: DefaultBodyTimeout, log: log}
}

// Listen opens the unix socket at path with mode 0600, replacing a stale one.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s is in use: is another portcullisd running?", path)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return l, nil
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/settings", s.getSettings)
	mux.HandleFunc("PUT /v1/settings", s.putSettings)
	mux.HandleFunc("GET /v1/flows", s.flows)
	mux.HandleFunc("DELETE /v1/flows", s.flushFlows)
	mux.HandleFunc("GET /v1/drops", s.drops)
	mux.HandleFunc("GET /debug/pprof/heap", s.heapProfile)
	mux.HandleFunc("GET /debug/memory", s.memStats)
	if s.Health != nil {
		mux.Handle("GET /healthz", s.Health)
	}
	s.resource(mux, "networks", "network", "{name}", func(r *http.Request) string { return r.PathValue("name") })
	s.resource(mux, "endpoints", "endpoint", "{id}", func(r *http.Request) string { return r.PathValue("id") })
	s.resource(mux, "ports", "port", "{id}", func(r *http.Request) string { return r.PathValue("id") })
	s.resource(mux, "links", "link", "{parent}/{alias}", func(r *http.Request) string {
		return r.PathValue("parent") + "/" + r.PathValue("alias")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, &model.Error{Status: http.StatusNotFound, Msg: fmt.Sprintf("no route %s %s: see /v1/status, /v1/networks, /v1/endpoints, /v1/ports, /v1/links", r.Method, r.URL.Path)})
	})
	return s.limitBody(s.logged(mux))
}

func (s *Server) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: 200}
		h.ServeHTTP(sw, r)
		if r.Method != http.MethodGet {
			s.log.Info("api", "method", r.Method, "path", r.URL.Path, "status", sw.status, "took", time.Since(start))
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

func (s *Server) resource(mux *http.ServeMux, plural, kind, key string, keyOf func(*http.Request) string) {
	base := "/v1/" + plural
	mux.HandleFunc("GET "+base, func(w http.ResponseWriter, r *http.Request) {
		s.answer(w, func(want *model.Resolved) any { return List(want, kind) })
	})
	mux.HandleFunc("GET "+base+"/"+key, func(w http.ResponseWriter, r *http.Request) {
		if !s.answer(w, func(want *model.Resolved) any { return get(want, kind, keyOf(r)) }) {
			writeErr(w, model.NotFound(kind, keyOf(r)))
		}
	})
	mux.HandleFunc("PUT "+base+"/"+key, func(w http.ResponseWriter, r *http.Request) {
		op, err := decodePut(r, kind, keyOf(r))
		if err != nil {
			writeErr(w, err)
			return
		}
		s.change(w, r, op, kind, keyOf(r))
	})
	mux.HandleFunc("DELETE "+base+"/"+key, func(w http.ResponseWriter, r *http.Request) {
		s.change(w, r, model.Op{Kind: kind, Delete: true, Key: keyOf(r)}, kind, keyOf(r))
	})
}

// change applies op and answers with the object's new view (204 on delete).
func (s *Server) change(w http.ResponseWriter, r *http.Request, op model.Op, kind, key string) {
	if _, err := s.rec.Do(r.Context(), op); err != nil {
		writeErr(w, err)
		return
	}
	if op.Delete {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.answer(w, func(want *model.Resolved) any { return get(want, kind, key) })
}

// answer encodes what view returns from the desired state under the
// reconciler's lock and writes it after releasing the lock: a client that
// reads its answer slowly, or never, then holds only its own connection,
// not every change. It reports false, writing nothing, when view returns
// nil.
func (s *Server) answer(w http.ResponseWriter, view func(*model.Resolved) any) bool {
	status, b := 0, []byte(nil)
	s.rec.Read(func(want *model.Resolved) {
		if v := view(want); v != nil {
			status, b = encodeJSON(http.StatusOK, v)
		}
	})
	if b == nil {
		return false
	}
	writeBody(w, status, b)
	return true
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.rec.Status()
	maps.Copy(st, s.Info)
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request) {
	s.answer(w, func(want *model.Resolved) any { return want.Settings })
}

func (s *Server) putSettings(w http.ResponseWriter, r *http.Request) {
	var st model.Settings
	if err := decode(r, &st); err != nil {
		writeErr(w, err)
		return
	}
	if st.Backend != "" {
		if running := s.rec.Backend().Name(); st.Backend != running && st.Backend != "auto" {
			writeErr(w, &model.Error{Status: http.StatusConflict, Field: "backend",
				Msg: fmt.Sprintf("backend %q differs from the running %q: restart portcullisd with --backend=%s to switch", st.Backend, running, st.Backend)})
			return
		}
	}
	if _, err := s.rec.Do(r.Context(), model.Op{Kind: "settings", Settings: &st}); err != nil {
		writeErr(w, err)
		return
	}
	s.getSettings(w, r)
}

// flowFilter reads ?addr=&port=&proto= .
func flowFilter(r *http.Request) (dataplane.FlowFilter, error) {
	return ParseFlowFilter(r.URL.Query())
}

// ParseFlowFilter reads the flow filter of /v1/flows from its query
// parameters addr, port and proto, refusing what the API refuses.
func ParseFlowFilter(q url.Values) (dataplane.FlowFilter, error) {
	var f dataplane.FlowFilter
	if v := q.Get("addr"); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return f, &model.Error{Status: http.StatusBadRequest, Field: "addr", Msg: fmt.Sprintf("addr %q is not an IP address", v)}
		}
		f.Addr = a
	}
	if v := q.Get("port"); v != "" {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			return f, &model.Error{Status: http.StatusBadRequest, Field: "port", Msg: fmt.Sprintf("port %q is not a port: use 1-65535", v)}
		}
		f.Port = uint16(p)
	}
	switch v := q.Get("proto"); v {
	case "", "tcp", "udp", "sctp", "icmp", "icmpv6":
		f.Proto = v
	default:
		return f, &model.Error{Status: http.StatusBadRequest, Field: "proto", Msg: fmt.Sprintf("proto %q: use tcp, udp, sctp, icmp or icmpv6", v)}
	}
	return f, nil
}

func (s *Server) flowTable() (dataplane.FlowTable, error) {
	ft, ok := s.rec.Backend().(dataplane.FlowTable)
	if !ok {
		return nil, &model.Error{Status: http.StatusNotImplemented, Msg: fmt.Sprintf("backend %s does not list flows", s.rec.Backend().Name())}
	}
	return ft, nil
}

func (s *Server) flows(w http.ResponseWriter, r *http.Request) {
	s.withFlows(w, r, func(ft dataplane.FlowTable, f dataplane.FlowFilter) (any, error) {
		return ft.Flows(r.Context(), f)
	})
}

func (s *Server) flushFlows(w http.ResponseWriter, r *http.Request) {
	s.withFlows(w, r, func(ft dataplane.FlowTable, f dataplane.FlowFilter) (any, error) {
		n, err := ft.FlushFlows(r.Context(), f)
		return map[string]int{"flushed": n}, err
	})
}

// withFlows parses the flow filter and answers with what do returns.
func (s *Server) withFlows(w http.ResponseWriter, r *http.Request, do func(dataplane.FlowTable, dataplane.FlowFilter) (any, error)) {
	f, err := flowFilter(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	ft, err := s.flowTable()
	if err != nil {
		writeErr(w, err)
		return
	}
	v, err := do(ft, f)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) drops(w http.ResponseWriter, r *http.Request) {
	dc, ok := s.rec.Backend().(dataplane.DropCounter)
	if !ok {
		writeErr(w, &model.Error{Status: http.StatusNotImplemented, Msg: fmt.Sprintf("backend %s does not count drops", s.rec.Backend().Name())})
		return
	}
	drops, err := dc.Drops(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, drops)
}

// decodePut reads a PUT body and checks its key against the path.
func decodePut(r *http.Request, kind, key string) (model.Op, error) {
	op := model.Op{Kind: kind}
	var err error
	switch kind {
	case "network":
		op.Network = &model.Network{}
		if err = decode(r, op.Network); err == nil {
			err = matchKey("name", &op.Network.Name, key)
		}
	case "endpoint":
		op.Endpoint = &model.Endpoint{}
		if err = decode(r, op.Endpoint); err == nil {
			err = matchKey("id", &op.Endpoint.ID, key)
		}
	case "port":
		op.Port = &model.PortMapping{}
		if err = decode(r, op.Port); err == nil {
			err = matchKey("id", &op.Port.ID, key)
		}
	case "link":
		op.Link = &model.Link{}
		if err = decode(r, op.Link); err == nil {
			parent, alias := r.PathValue("parent"), r.PathValue("alias")
			if err = matchKey("parent", &op.Link.Parent, parent); err == nil {
				err = matchKey("alias", &op.Link.Alias, alias)
			}
		}
	}
	return op, err
}

func matchKey(field string, got *string, want string) error {
	if *got != "" && *got != want {
		return &model.Error{Status: http.StatusBadRequest, Field: field,
			Msg: fmt.Sprintf("%s %q in the body does not match %q in the path", field, *got, want)}
	}
	if *got == "" {
		// A copy: the path value is a slice of the request line, which the
		// object's key would otherwise keep alive for as long as it exists.
		*got = strings.Clone(want)
	}
	return nil
}

// List is what GET /v1/<kind>s answers: the view of every object of kind
// (network, endpoint, port or link), in the order of their keys. pcctl
// shows the same rows from the state directory when the agent is down.
func List(want *model.Resolved, kind string) any {
	switch kind {
	case "network":
		return views(want.Networks, (*model.RNetwork).View)
	case "endpoint":
		return views(want.Endpoints, (*model.REndpoint).View)
	case "port":
		return views(want.Ports, (*model.RPort).View)
	default:
		return views(want.Links, (*model.RLink).View)
	}
}

func views[T, V any](m map[string]*T, view func(*T) V) []V {
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, view(m[k]))
	}
	return out
}

// get returns the view of one object, or nil.
func get(want *model.Resolved, kind, key string) any {
	switch kind {
	case "network":
		if n := want.Networks[key]; n != nil {
			return n.View()
		}
	case "endpoint":
		if e := want.Endpoints[key]; e != nil {
			return e.View()
		}
	case "port":
		if p := want.Ports[key]; p != nil {
			return p.View()
		}
	case "link":
		if l := want.Links[key]; l != nil {
			return l.View()
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	status, b := encodeJSON(status, v)
	writeBody(w, status, b)
}

// encodeJSON returns the status and body that answer with v: v indented,
// or, should v not encode, a 500 that says why.
func encodeJSON(status int, v any) (int, []byte) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(&model.Error{Msg: "encode the answer: " + err.Error()})
	}
	return status, append(b, '\n')
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func writeErr(w http.ResponseWriter, err error) {
	var e *model.Error
	if !errors.As(err, &e) {
		e = &model.Error{Status: model.StatusOf(err), Msg: err.Error()}
	}
	if errors.Is(err, context.Canceled) {
		e.Status = 499
	}
	writeJSON(w, e.Status, e)
}
