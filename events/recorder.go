package events

import (
	"log/slog"
	"sync"
	"time"
)

// Recorder keeps events in a Ring and, when configured, appends them to a
// JSONL file. It is a Sink: Emit never blocks.
type Recorder struct {
	ring *Ring

	mu     sync.Mutex // guards file against Emit after Close
	file   *fileSink
	closed bool
}

// NewRecorder returns a recorder for a validated c. now stamps events that
// come without a time (nil: time.Now); log (nil: discarded) says once per
// kind of error that the file dropped events.
func NewRecorder(c Config, now func() time.Time, log *slog.Logger) (*Recorder, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{ring: NewRing(c.RingSize, now)}
	if c.File != "" {
		f, err := newFileSink(c, fileQueue, log)
		if err != nil {
			return nil, err
		}
		r.file = f
		f.start()
	}
	return r, nil
}

// Emit records ev in the ring and queues it for the file.
func (r *Recorder) Emit(ev Event) {
	ev = r.ring.Add(ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.file != nil && !r.closed {
		r.file.enqueue(ev)
	}
}

// EmitBatch implements BatchSink: without a file, only the events the
// ring keeps are built (Ring.AddBatch); with one, every event is.
func (r *Recorder) EmitBatch(n int, kind Kind, build func(i int) (Event, bool)) {
	if r.file == nil {
		r.ring.AddBatch(n, kind, build)
		return
	}
	for i := range n {
		if ev, ok := build(i); ok {
			ev.Kind = kind
			r.Emit(ev)
		}
	}
}

// Query returns the events q selects from the ring.
func (r *Recorder) Query(q Query) Page { return r.ring.Query(q) }

// RecorderStats counts what a recorder did.
type RecorderStats struct {
	Stats
	// FileDropped counts events the file never got: its queue was full
	// or the write failed.
	FileDropped uint64
	// File says whether a file is configured.
	File bool
}

// Stats returns the recorder's counters.
func (r *Recorder) Stats() RecorderStats {
	st := RecorderStats{Stats: r.ring.Stats(), File: r.file != nil}
	if r.file != nil {
		st.FileDropped = r.file.dropped.Load()
	}
	return st
}

// Close writes what the file's queue holds and closes the file. Events
// emitted afterwards go to the ring only.
func (r *Recorder) Close() {
	r.mu.Lock()
	if r.closed || r.file == nil {
		r.closed = true
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.file.close()
}
