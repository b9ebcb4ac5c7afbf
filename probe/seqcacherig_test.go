package probe

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ghostd/ghostd/probe/internal/wire"
)

// fakeClock is the read-ahead cache's clock, moved by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// seqCall is one ReadSeq call as a countingSeq saw it.
type seqCall struct {
	NS      string
	Cookies []uint64
}

// countingSeq serves fixed sequence state and records every call.
type countingSeq struct {
	mu     sync.Mutex
	state  map[uint64]SeqState
	err    error
	during func() // runs inside each call, as a pass would take time
	calls  []seqCall
}

func (f *countingSeq) ReadSeq(_ context.Context, ns string, cookies []uint64) (map[uint64]SeqState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, seqCall{ns, slices.Sorted(slices.Values(cookies))})
	if f.during != nil {
		f.during()
	}
	if f.err != nil {
		return nil, f.err
	}
	return seqAnswer(f.state, cookies), nil
}

func (f *countingSeq) Calls() []seqCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *countingSeq) set(cookie uint64, st SeqState) {
	f.mu.Lock()
	f.state[cookie] = st
	f.mu.Unlock()
}

// stateOf gives every cookie its own numbers, so a probe shows whose it used.
func stateOf(cookie uint64) SeqState {
	return SeqState{SndUna: uint32(cookie) * 1000, SndNxt: uint32(cookie) * 1000, RcvNxt: uint32(cookie)*1000 + 500, RcvWnd: 65535}
}

var cacheT0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// cacheRig is a prober over fake namespaces whose peers all ACK, with a
// counting reader and a fake clock.
type cacheRig struct {
	p     *Prober
	seq   *countingSeq
	clock *fakeClock
	mu    sync.Mutex
	conns []*fakeConn
}

// wantMissing checks how many of targets the prober would have to read
// again; when says at what point of the test.
func (r *cacheRig) wantMissing(t *testing.T, targets []Target, want int, when string) {
	t.Helper()
	if got := r.p.Missing(targets); got != want {
		t.Errorf("%s: Missing = %d, want %d", when, got, want)
	}
}

func newCacheRig(t *testing.T, seq SeqReader) *cacheRig {
	cfg := quickConfig()
	cfg.Attempts = 1
	cfg.PerHost = 1 << 16
	// Every fake peer answers: the wait only runs out when a loaded machine
	// delays the answer, which must not read as silence (quickConfig's
	// 50 ms did under the race detector at load 12-15).
	cfg.Timeout = 10 * time.Second
	r := &cacheRig{clock: &fakeClock{t: cacheT0}}
	if cs, ok := seq.(*countingSeq); ok {
		r.seq = cs
	}
	r.p = newFakeProber(t, cfg, seq, nil)
	r.p.now = r.clock.Now
	r.p.cache = newSeqCache(cacheT0.Add(-time.Hour))
	r.p.open = func(string, []uint16) (rawConn, error) {
		c := newFakeConn(ackPeer)
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
		return c, nil
	}
	return r
}

// probes returns every probe sent so far, by local port.
func (r *cacheRig) probes() map[uint16]wire.Reply {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[uint16]wire.Reply)
	for _, c := range r.conns {
		for _, pr := range c.probes() {
			out[pr.Src.Port()] = pr
		}
	}
	return out
}

// cacheTargets returns n idle targets spread over namespaces, each with its
// own cookie and local port, and a reader that knows them all.
func cacheTargets(n int, namespaces ...string) ([]Target, *countingSeq) {
	seq := &countingSeq{state: make(map[uint64]SeqState)}
	var targets []Target
	for i := range n {
		cookie := uint64(i + 1)
		tg := target(cookie, fmt.Sprintf("192.0.2.1:%d", 10000+i), "198.51.100.2:80")
		tg.NetnsPath = namespaces[i%len(namespaces)]
		tg.QuietSince = cacheT0.Add(-time.Minute)
		targets = append(targets, tg)
		seq.state[cookie] = stateOf(cookie)
	}
	return targets, seq
}

// checkProbed checks every target's verdict and that its probe carried the
// state the reader had for it when it was read.
func checkProbed(t *testing.T, r *cacheRig, targets []Target, res []Result, want func(Target) SeqState) {
	t.Helper()
	probes := r.probes()
	for i, tg := range targets {
		if res[i].Verdict != Alive || res[i].Mode != InWindow {
			t.Fatalf("target %d: %+v", i, res[i])
		}
		pr, ok := probes[tg.Local.Port()]
		if !ok {
			t.Fatalf("target %d: no probe on the wire", i)
		}
		st := want(tg)
		if pr.Seq != st.SndUna-1 || pr.Ack != st.RcvNxt-1 {
			t.Fatalf("target %d: probe seq %d ack %d, want %d %d", i, pr.Seq, pr.Ack, st.SndUna-1, st.RcvNxt-1)
		}
	}
}

func probeInChunks(r *cacheRig, targets []Target) []Result {
	var res []Result
	for chunk := range slices.Chunk(targets, 512) {
		res = append(res, r.p.ProbeAll(context.Background(), chunk)...)
	}
	return res
}
