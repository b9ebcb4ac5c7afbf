package probe

import "sync"

// workers runs a namespace's probes, each on a goroutine of its own as
// before, but hands a probe to a goroutine that finished one and waits for
// more when there is such a goroutine: a probe's goroutine grows its stack
// from the runtime's starting size to about 8 KiB (probeOne's frames and
// the send path), and a new goroutine per probe paid that growth, copying
// its stack twice, on every probe (~7 % of a 200 000-socket first pass's
// CPU). The zero value is ready; wait ends the idle ones.
type workers struct {
	jobs    chan func() // unbuffered: a send succeeds only into an idle worker
	closed  bool
	started int // goroutines started
	wg      sync.WaitGroup
}

// run runs f on an idle worker, or on a new one when none is waiting.
func (w *workers) run(f func()) {
	if w.jobs == nil {
		w.jobs = make(chan func())
	}
	select {
	case w.jobs <- f:
	default:
		jobs := w.jobs
		w.started++
		w.wg.Go(func() {
			f()
			for f := range jobs {
				f()
			}
		})
	}
}

// wait waits for every job run so far; the workers end. run must not be
// called after it; calling wait again does nothing more.
func (w *workers) wait() {
	if w.jobs != nil && !w.closed {
		close(w.jobs)
		w.closed = true
	}
	w.wg.Wait()
}
