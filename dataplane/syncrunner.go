package dataplane

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Reasons for a full resync, as SyncStats and the metrics name them.
const (
	SyncPeriodic = "periodic" // the period passed: repairs drift nobody reported
	SyncFailure  = "failure"  // a change failed in the backend
	SyncRetry    = "retry"    // the resync before failed
)

// SyncRunner repairs drift, as kube-proxy's sync runner does: a full
// resync of the whole desired state every period, so that a flushed nft
// table, a detached program or a deleted map entry comes back without an
// API call; at once after a change failed in the backend; and after a
// failed resync, again with a backoff that doubles from minRetry up to the
// period. A resync is the start-up sync without the start: it never touches
// conntrack or the BPF flow tables, so established flows go on.
type SyncRunner struct {
	rec      *Reconciler
	period   time.Duration
	minRetry time.Duration
	kick     chan struct{}

	mu    sync.Mutex
	stats SyncStats
}

// SyncStats are the runner's counters for /v1/status and metrics.
type SyncStats struct {
	Period time.Duration `json:"period_ns"`
	// Syncs counts full resyncs by reason, failed ones included.
	Syncs map[string]uint64 `json:"syncs"`
	// Failures counts resyncs that failed.
	Failures uint64 `json:"failures"`
	// Repairs counts resyncs that put the kernel back in order: the first
	// to succeed after a failed change or resync, and those that found
	// drift (a backend that is a Repairer tells).
	Repairs   uint64    `json:"repairs"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// NewSyncRunner returns a runner for rec that resyncs every period (at
// least a second) and retries a failed resync after minRetry at first. It
// is told of failed changes through rec.Observe, so create it before any
// change is applied, and after whatever else sets Observe or adds to it.
func NewSyncRunner(rec *Reconciler, period, minRetry time.Duration) (*SyncRunner, error) {
	if period < time.Second {
		return nil, fmt.Errorf("resync period %v: must be at least 1s, e.g. 1m", period)
	}
	if minRetry <= 0 || minRetry > period {
		minRetry = min(time.Second, period)
	}
	r := &SyncRunner{rec: rec, period: period, minRetry: minRetry, kick: make(chan struct{}, 1),
		stats: SyncStats{Period: period, Syncs: map[string]uint64{}}}
	prev := rec.Observe
	rec.Observe = func(kind string, took time.Duration, err error) {
		if prev != nil {
			prev(kind, took, err)
		}
		// Bad input (4xx) changed nothing; a failure in the kernel may
		// have left the backend needing a full sync.
		if err != nil && kind != kindResync && model.StatusOf(err) >= http.StatusInternalServerError {
			r.Kick()
		}
	}
	rec.AddStatus("sync", func() any { return r.Stats() })
	return r, nil
}

// kindResync is what Observe is told a resync is.
const kindResync = "resync"

// Kick asks for a resync now (reason failure); it never blocks.
func (r *SyncRunner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run resyncs until ctx ends.
func (r *SyncRunner) Run(ctx context.Context) {
	timer := time.NewTimer(r.period)
	defer timer.Stop()
	reason, retry, broken := SyncPeriodic, time.Duration(0), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.kick:
			reason, broken = SyncFailure, true
		}
		before := repairedBy(r.rec.Backend())
		err := r.rec.Resync(ctx)
		if ctx.Err() != nil {
			return
		}
		r.record(reason, err, broken || repairedBy(r.rec.Backend()) > before)
		if err == nil {
			reason, retry, broken = SyncPeriodic, 0, false
			timer.Reset(r.period)
			continue
		}
		retry = min(max(2*retry, r.minRetry), r.period)
		reason, broken = SyncRetry, true
		timer.Reset(retry)
	}
}

func (r *SyncRunner) record(reason string, err error, broken bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Syncs[reason]++
	r.stats.LastSync = time.Now()
	r.stats.LastError = ""
	switch {
	case err != nil:
		r.stats.Failures++
		r.stats.LastError = err.Error()
		r.rec.log.Warn("resync failed", "reason", reason, "err", err)
	case broken:
		r.stats.Repairs++
		r.rec.log.Info("resync repaired the dataplane", "reason", reason)
	}
}

// Repairer is implemented by backends that tell how many of their full
// syncs found the kernel out of step with what they had programmed (a
// flushed table, a detached program, a deleted entry) and put it right.
// The count only grows.
type Repairer interface {
	Repaired() uint64
}

func repairedBy(be Backend) uint64 {
	if r, ok := be.(Repairer); ok {
		return r.Repaired()
	}
	return 0
}

// Stats returns a copy of the runner's counters.
func (r *SyncRunner) Stats() SyncStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats
	st.Syncs = maps.Clone(r.stats.Syncs)
	return st
}

// Resync re-applies the whole desired state, as Start does: forwarding,
// bridges, endpoint interfaces (a missing one is logged, not fatal), and
// one full backend sync. Observe is told of it (kind "resync"), so health
// recovers when it succeeds.
func (c *Reconciler) Resync(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	err := c.resync(ctx)
	if c.Observe != nil {
		c.Observe(kindResync, time.Since(start), err)
	}
	return err
}

func (c *Reconciler) resync(ctx context.Context) error {
	if err := c.forwarding(); err != nil {
		return err
	}
	if err := c.plugAll(false); err != nil {
		return err
	}
	return c.fullSync(ctx)
}
