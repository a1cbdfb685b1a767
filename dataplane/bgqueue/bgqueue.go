// Package bgqueue runs clean-up work off the API path. Each change queues
// a batch of items; one background goroutine hands every batch queued
// meanwhile to the work function in a single call, in queue order, so a
// burst of changes costs one pass over a large kernel table instead of one
// each.
package bgqueue

import "sync"

// Queue is safe for concurrent use. Its zero value is not usable: use New.
// The work function may take locks that callers of Add hold: it never runs
// on the caller's goroutine.
type Queue[T any] struct {
	work func([]T)

	mu      sync.Mutex
	pending []T
	batches int
	wake    chan struct{} // nil while no goroutine runs
	stop    chan struct{}
	done    chan struct{}
	last    chan struct{}  // done of the last goroutine, which a new one waits for
	busy    sync.WaitGroup // one per queued batch, done when worked
}

// New returns a queue whose goroutine, started by Add, calls work with the
// items of every batch queued since its last call.
func New[T any](work func([]T)) *Queue[T] {
	return &Queue[T]{work: work}
}

// Add queues one batch, starting the goroutine if none runs (first use, or
// after Close).
func (q *Queue[T]) Add(items ...T) {
	if len(items) == 0 {
		return
	}
	q.mu.Lock()
	if q.wake == nil {
		q.wake, q.stop, q.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go q.run(q.last, q.wake, q.stop, q.done)
		q.last = q.done
	}
	q.pending = append(q.pending, items...)
	q.batches++
	q.busy.Add(1)
	wake := q.wake
	q.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

func (q *Queue[T]) run(prev, wake, stop, done chan struct{}) {
	defer close(done)
	if prev != nil {
		<-prev // one goroutine at a time: batches are worked in order
	}
	for {
		select {
		case <-stop:
			q.drain() // what was queued still gets done
			return
		case <-wake:
			q.drain()
		}
	}
}

func (q *Queue[T]) drain() {
	q.mu.Lock()
	items, n := q.pending, q.batches
	q.pending, q.batches = nil, 0
	q.mu.Unlock()
	if n == 0 {
		return
	}
	q.work(items)
	for range n {
		q.busy.Done()
	}
}

// Wait blocks until every batch queued so far has been worked.
func (q *Queue[T]) Wait() { q.busy.Wait() }

// Close does what is queued and stops the goroutine; a later Add starts a
// new one.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	stop, done := q.stop, q.done
	q.wake, q.stop, q.done = nil, nil, nil
	q.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
}
