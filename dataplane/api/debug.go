package api

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
)

// heapProfile answers GET /debug/pprof/heap with the agent's heap profile
// (pprof's protobuf form; `go tool pprof -top -sample_index=inuse_space
// FILE`), for finding where its memory goes. ?gc=1 collects garbage
// first, so in-use figures are live bytes only. The socket is the
// agent's (root only), so nothing more is exposed than the API already
// is; net/http/pprof is not imported, so no handler lands on
// http.DefaultServeMux.
func (s *Server) heapProfile(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("gc") == "1" {
		runtime.GC()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := pprof.Lookup("heap").WriteTo(w, 0); err != nil {
		s.log.Warn("write heap profile", "err", err)
	}
}

// memStats answers GET /debug/memory: the Go runtime's view of the
// agent's memory, in bytes (what the heap holds live, what the runtime
// took from the kernel and what it gave back). ?gc=1 collects garbage
// first, so heap_alloc is the live heap. ?free=1 first returns
// every unused page to the kernel (debug.FreeOSMemory), so that RSS read
// right after shows what the agent holds rather than what the scavenger
// has not got to yet.
func (s *Server) memStats(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Query().Get("free") == "1":
		debug.FreeOSMemory() // collects too
	case r.URL.Query().Get("gc") == "1":
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	writeJSON(w, http.StatusOK, map[string]uint64{
		"heap_alloc":    m.HeapAlloc,
		"heap_inuse":    m.HeapInuse,
		"heap_idle":     m.HeapIdle,
		"heap_released": m.HeapReleased,
		"heap_objects":  m.HeapObjects,
		"next_gc":       m.NextGC,
		"sys":           m.Sys,
		"stack_inuse":   m.StackInuse,
		"gc_cycles":     uint64(m.NumGC),
	})
}
