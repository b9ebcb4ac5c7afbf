package engine

import (
	"context"
	"sync"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/kill"
	"github.com/ghostd/ghostd/probe"
)

// Candidate is a kill candidate as Snapshot returns it: a confirmed ghost
// or a CLOSE_WAIT leak. The one line that says where the kill policy lives.
type Candidate = kill.Candidate

// KillFunc applies the kill policy to candidates and returns the keys of
// the sockets it ended. The pipeline depends on this function, not on a
// killer, so the policy and its fd operations can live wherever they belong.
type KillFunc func(ctx context.Context, cands []Candidate) []inventory.Key

// Pipeline is the one path from an inventory pass to the kills that both
// `ghostd run` and `ghostd scan` take: scan, probe chunk by chunk (each
// chunk checked against the latest inventory, its sequence state read
// ahead, its verdicts recorded), publish, kill. The daemon calls its steps
// from two loops (Scan and Publish from the scan loop, ProbeChunk from the
// probe loop); a scan calls them in a row. Its methods are safe for
// concurrent use.
type Pipeline struct {
	engine  *Engine
	kill    KillFunc
	publish func(*exporter.Snapshot)
	observe func([]probe.Result)

	pubMu sync.Mutex // one Publish at a time: the scan loop and the probe loop both publish
}

// PipelineOptions are the pipeline's hooks; nil ones do nothing.
type PipelineOptions struct {
	// Kill ends what the kill policy allows among a snapshot's candidates.
	Kill KillFunc
	// Publish receives every snapshot the pipeline builds, kills applied.
	Publish func(*exporter.Snapshot)
	// Observe receives the results of every probed chunk.
	Observe func([]probe.Result)
}

// NewPipeline returns the pipeline of e.
func NewPipeline(e *Engine, o PipelineOptions) *Pipeline {
	return &Pipeline{engine: e, kill: o.Kill, publish: o.Publish, observe: o.Observe}
}

// Scan runs one inventory pass and returns the suspects due for a probe
// (none when probing is off).
func (p *Pipeline) Scan(ctx context.Context) []probe.Target {
	p.engine.Scan(ctx)
	p.engine.emitSuspects()
	if p.engine.prober == nil {
		return nil
	}
	return p.engine.Targets()
}

// ProbeChunk probes the head of pending: up to ProbeChunk targets that are
// still due and still in the table, the others dropped. It records their
// verdicts, hands the results to Observe, publishes at once when a verdict
// confirmed or cleared a ghost (so the metrics agree with the JSON, and a
// kill need not wait for the next scan), and returns the rest of pending.
func (p *Pipeline) ProbeChunk(ctx context.Context, pending []probe.Target) []probe.Target {
	e := p.engine
	if e.prober == nil {
		return nil
	}
	pending, n := e.DueHead(pending, ProbeChunk)
	if n == 0 {
		return pending
	}
	before := e.GhostChanges()
	results := e.probeChunk(ctx, pending[:n:n], pending)
	if e.GhostChanges() != before {
		p.Publish(ctx)
	}
	if p.observe != nil {
		p.observe(results)
	}
	return pending[n:]
}

// Probe probes every target of a batch, a chunk at a time, until none is
// left or ctx ends.
func (p *Pipeline) Probe(ctx context.Context, targets []probe.Target) {
	for len(targets) > 0 && ctx.Err() == nil {
		targets = p.ProbeChunk(ctx, targets)
	}
}

// Publish builds the snapshot of the last scan with the verdicts recorded
// so far, applies the kill policy to its candidates (marking what it ended
// killed, and building the snapshot again if it ended any), hands it to
// Publish and returns it.
func (p *Pipeline) Publish(ctx context.Context) *exporter.Snapshot {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	e := p.engine
	snap, cands := e.Snapshot()
	if p.kill != nil && len(cands) > 0 {
		killed := p.kill(ctx, cands)
		for _, k := range killed {
			e.MarkKilled(k)
		}
		if len(killed) > 0 {
			snap, _ = e.Snapshot()
		}
	}
	if p.publish != nil {
		p.publish(snap)
	}
	return snap
}
