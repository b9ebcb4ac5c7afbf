package engine

import (
	"context"
	"errors"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
)

// Probe probes the targets (which must come from Targets) and records the
// verdicts. It returns the results in target order.
func (e *Engine) Probe(ctx context.Context, targets []probe.Target) []probe.Result {
	if e.prober == nil || len(targets) == 0 {
		return nil
	}
	// In chunks: a probe waiting for its turn costs a goroutine and its
	// buffers, and a first pass over a host of idle pools has 100 000s.
	results := make([]probe.Result, 0, len(targets))
	for i := 0; i < len(targets) && ctx.Err() == nil; i += ProbeChunk {
		results = append(results, e.probeChunk(ctx, targets[i:min(i+ProbeChunk, len(targets))], targets[i:])...)
	}
	return results
}

// probeChunk probes one chunk and records its verdicts. window is the chunk
// and the targets after it: when the chunk lacks sequence state, the prober
// reads it for the first ReadAheadWindow of them in one walk of the TCP table.
func (e *Engine) probeChunk(ctx context.Context, chunk, window []probe.Target) []probe.Result {
	e.readAhead(ctx, chunk, window[:min(len(window), ReadAheadWindow)])
	r := e.prober.ProbeAll(ctx, chunk)
	e.Record(chunk, r)
	return r
}

// Reprobe probes the given suspects again now, records the results and
// returns them in order: the kill policy's fresh confirmation right before
// a kill. A key that is no longer a probeable suspect gets Unprobed with an
// error.
func (e *Engine) Reprobe(ctx context.Context, keys []inventory.Key) []probe.Result {
	out := make([]probe.Result, len(keys))
	var targets []probe.Target
	var idx []int
	e.mu.Lock()
	for i, k := range keys {
		ent, ok := e.tracker.Get(k)
		if !ok || !ent.Reasons.Probeable() || e.killed[k] {
			out[i] = probe.Result{Verdict: probe.Unprobed, Err: errNotSuspect}
			continue
		}
		targets = append(targets, e.target(&ent))
		idx = append(idx, i)
	}
	e.mu.Unlock()
	if e.prober == nil {
		for _, i := range idx {
			out[i] = probe.Result{Verdict: probe.Unprobed, Err: errNoProber}
		}
		return out
	}
	for j, r := range e.Probe(ctx, targets) {
		out[idx[j]] = r
	}
	return out
}

var (
	errNotSuspect = errors.New("engine: no longer a probeable suspect")
	errNoProber   = errors.New("engine: probing is off")
)

// ProbeChunk is how many targets are handed to the prober at once: about
// 2.5 s of work at the default 200 probes/s.
const ProbeChunk = 512

// ReadAheadWindow is how many targets one read-ahead covers: reading the
// sequence numbers of the sockets to probe costs a walk of the host's whole
// TCP table (~300 ms with 200 000 sockets), whatever their number, so one
// walk serves the next few minutes of probes instead of one chunk.
const ReadAheadWindow = MaxTargets

// readAheader is a prober that can read sequence state ahead of its probes
// (probe.Prober); fakes need not be.
type readAheader interface {
	Missing(targets []probe.Target) int
	ReadAhead(ctx context.Context, targets []probe.Target) int
}

// readAhead has the prober read the sequence state of every target in
// window when the chunk about to be probed lacks some: one walk of the TCP
// table for many chunks. It does nothing when the prober cannot.
func (e *Engine) readAhead(ctx context.Context, chunk, window []probe.Target) {
	if ra, ok := e.prober.(readAheader); ok && ra.Missing(chunk) > 0 {
		ra.ReadAhead(ctx, window)
	}
}
