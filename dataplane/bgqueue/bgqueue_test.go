package bgqueue

import (
	"slices"
	"sync"
	"testing"
)

func TestQueueOrderWaitClose(t *testing.T) {
	var (
		mu   sync.Mutex
		got  []int
		gate = make(chan struct{})
	)
	calls := 0
	q := New(func(items []int) {
		<-gate
		mu.Lock()
		defer mu.Unlock()
		calls++
		got = append(got, items...)
	})
	q.Add(1, 2)
	q.Add()  // nothing to do
	q.Add(3) // queued while the first batch may be in progress
	q.Add(4)
	close(gate)
	q.Wait()
	mu.Lock()
	if !slices.Equal(got, []int{1, 2, 3, 4}) || calls > 3 || calls < 1 {
		t.Fatalf("worked %v in %d calls", got, calls)
	}
	mu.Unlock()

	q.Close()
	q.Close()
	q.Add(5) // after Close: a new goroutine does it
	q.Wait()
	q.Close()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("after Close: %v", got)
	}
}

func TestCloseDrains(t *testing.T) {
	var got []int
	block := make(chan struct{})
	q := New(func(items []int) {
		<-block
		got = append(got, items...)
	})
	q.Add(1)
	q.Add(2)
	go close(block)
	q.Close() // returns only when both batches are worked
	if len(got) != 2 {
		t.Fatalf("Close returned with %v worked", got)
	}
	// A queue never used closes at once.
	New(func([]int) { t.Fatal("worked") }).Close()
}
