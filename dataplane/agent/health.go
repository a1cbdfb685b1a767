package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/model"
)

// health is what GET /healthz answers, on the API socket and the metrics
// listener: 200 "ok" once the first full sync is done and while changes
// reach the backend; 503 with the reason before, and after a change or a
// resync the backend failed, until one succeeds again (the sync runner
// retries at once).
type health struct {
	mu      sync.Mutex
	ready   bool
	failing string
}

func (h *health) setReady() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready = true
}

// observe is told of every change the reconciler applied or tried. Bad
// input (a 4xx, such as a netns that does not exist) is the caller's
// problem, and a change its caller gave up on says nothing about the
// backend: neither makes the agent unhealthy.
func (h *health) observe(kind string, _ time.Duration, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil:
		h.failing = ""
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
	case model.StatusOf(err) >= http.StatusInternalServerError:
		h.failing = fmt.Sprintf("the backend failed (%s): %v", kind, err)
	}
}

func (h *health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	ready, failing := h.ready, h.failing
	h.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case !ready:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "starting: the first full sync of the state is not done")
	case failing != "":
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, failing)
	default:
		fmt.Fprint(w, "ok")
	}
}

// addObserver adds f to what the reconciler tells of every change, after
// what it told already.
func addObserver(rec *dataplane.Reconciler, f func(kind string, took time.Duration, err error)) {
	prev := rec.Observe
	rec.Observe = func(kind string, took time.Duration, err error) {
		if prev != nil {
			prev(kind, took, err)
		}
		f(kind, took, err)
	}
}
