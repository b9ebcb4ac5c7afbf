package probe

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkersRunEveryJob: every job runs once, concurrently when they wait
// on each other, finished ones' goroutines take later jobs, and wait
// returns once all are done (again at once).
func TestWorkersRunEveryJob(t *testing.T) {
	var w workers
	var ran atomic.Int32
	release := make(chan struct{})
	// Three jobs that block until released: each needs its own goroutine.
	for range 3 {
		w.run(func() { <-release; ran.Add(1) })
	}
	close(release)
	for range 100 {
		w.run(func() { ran.Add(1) })
		time.Sleep(100 * time.Microsecond) // a finished worker is waiting again
	}
	w.wait()
	w.wait()
	if n := ran.Load(); n != 103 {
		t.Fatalf("%d jobs ran, want 103", n)
	}
}

// TestWorkersReuse: jobs handed out one after another, each done before the
// next, run on a goroutine that already exists rather than one each.
func TestWorkersReuse(t *testing.T) {
	var w workers
	done := make(chan struct{})
	for range 50 {
		w.run(func() { done <- struct{}{} })
		<-done
		time.Sleep(200 * time.Microsecond) // the worker is back waiting
	}
	w.wait()
	if w.started > 5 {
		t.Errorf("%d goroutines started for 50 jobs one after another, want a few", w.started)
	}
}
