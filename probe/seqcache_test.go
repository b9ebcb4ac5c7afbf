package probe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReadAheadAmortisesReads(t *testing.T) {
	targets, seq := cacheTargets(2000, "/ns/a", "/ns/b")
	r := newCacheRig(t, seq)
	ctx := context.Background()
	if got := r.p.Missing(targets); got != 2000 {
		t.Fatalf("Missing before ReadAhead = %d, want 2000", got)
	}
	if got := r.p.ReadAhead(ctx, targets); got != 2000 {
		t.Fatalf("ReadAhead cached %d, want 2000", got)
	}
	calls := seq.Calls()
	if len(calls) != 2 || len(calls[0].Cookies) != 1000 || len(calls[1].Cookies) != 1000 || calls[0].NS == calls[1].NS {
		t.Fatalf("ReadAhead made %d calls, want one per namespace with 1000 cookies each", len(calls))
	}
	r.wantMissing(t, targets, 0, "after ReadAhead")
	// A second read ahead has nothing to read.
	if got := r.p.ReadAhead(ctx, targets); got != 0 || len(seq.Calls()) != 2 {
		t.Errorf("second ReadAhead cached %d with %d calls in all", got, len(seq.Calls()))
	}

	// The reader's numbers move on; the probes must carry the ones read ahead.
	for _, tg := range targets {
		seq.set(tg.Cookie, SeqState{SndUna: 7, RcvNxt: 7})
	}
	res := probeInChunks(r, targets)
	if n := len(seq.Calls()); n != 2 {
		t.Errorf("ProbeAll made %d reads of its own, want none", n-2)
	}
	checkProbed(t, r, targets, res, func(tg Target) SeqState { return stateOf(tg.Cookie) })

	// Each state served one probe: probing again reads afresh.
	r.wantMissing(t, targets, 2000, "after the probes (each state used once)")
	if r.p.cache.n != 0 || len(r.p.cache.ns) != 0 {
		t.Errorf("cache holds %d entries in %d namespaces after use", r.p.cache.n, len(r.p.cache.ns))
	}
	r.p.ProbeAll(ctx, targets[:10])
	if calls := seq.Calls(); len(calls) != 4 || len(calls[2].Cookies)+len(calls[3].Cookies) != 10 {
		t.Errorf("probing again: %d calls in all, want 4 (the last two for 10 cookies)", len(calls))
	}
}

func TestReadAheadDataMovedAfterRead(t *testing.T) {
	targets, seq := cacheTargets(50, "/ns/a")
	r := newCacheRig(t, seq)
	ctx := context.Background()
	r.p.ReadAhead(ctx, targets)
	r.clock.Add(time.Second)

	// Data moved on target 7 after the read: the next inventory says so.
	moved := targets[7]
	targets[7].QuietSince = r.clock.Now()
	seq.set(moved.Cookie, SeqState{SndUna: 424242, RcvNxt: 737373})
	if got := r.p.Missing(targets); got != 1 {
		t.Fatalf("Missing = %d, want 1", got)
	}
	res := r.p.ProbeAll(ctx, targets)
	calls := seq.Calls()
	if len(calls) != 2 || !cmp.Equal(calls[1], seqCall{"/ns/a", []uint64{moved.Cookie}}) {
		t.Errorf("reads %v, want the read ahead and a fresh read of cookie %d alone", calls, moved.Cookie)
	}
	checkProbed(t, r, targets, res, func(tg Target) SeqState {
		if tg.Cookie == moved.Cookie {
			return SeqState{SndUna: 424242, RcvNxt: 737373}
		}
		return stateOf(tg.Cookie)
	})
}

func TestReadAheadReadTimeIsBeforeThePass(t *testing.T) {
	targets, seq := cacheTargets(3, "/ns/a")
	r := newCacheRig(t, seq)
	// The pass takes 300 ms; data moved on target 0 while it ran.
	seq.during = func() { r.clock.Add(300 * time.Millisecond) }
	targets[0].QuietSince = cacheT0.Add(100 * time.Millisecond)
	if got := r.p.ReadAhead(context.Background(), targets); got != 3 {
		t.Fatalf("cached %d, want 3", got)
	}
	r.wantMissing(t, targets, 1, "a state read while data moved is not usable")
	// Equal times are not "after".
	targets[0].QuietSince = cacheT0
	r.wantMissing(t, targets, 1, "QuietSince equal to the read time")
	targets[0].QuietSince = cacheT0.Add(-time.Nanosecond)
	r.wantMissing(t, targets, 0, "QuietSince just before the read")
}

func TestReadAheadExpires(t *testing.T) {
	targets, seq := cacheTargets(20, "/ns/a", "/ns/b")
	r := newCacheRig(t, seq)
	ctx := context.Background()
	r.p.ReadAhead(ctx, targets)
	r.clock.Add(SeqCacheTTL)
	r.wantMissing(t, targets, 0, "at SeqCacheTTL")
	r.clock.Add(time.Second)
	r.wantMissing(t, targets, 20, "after SeqCacheTTL")
	for _, tg := range targets {
		seq.set(tg.Cookie, SeqState{SndUna: uint32(tg.Cookie), RcvNxt: uint32(tg.Cookie) + 9})
	}
	res := r.p.ProbeAll(ctx, targets)
	if n := len(seq.Calls()); n != 4 {
		t.Errorf("%d reads in all, want 4: two ahead, two fresh ones for expired states", n)
	}
	checkProbed(t, r, targets, res, func(tg Target) SeqState {
		return SeqState{SndUna: uint32(tg.Cookie), RcvNxt: uint32(tg.Cookie) + 9}
	})
	if r.p.cache.n != 0 {
		t.Errorf("%d expired entries left after ProbeAll saw them", r.p.cache.n)
	}

	// A clock that goes backwards expires entries too.
	r.p.ReadAhead(ctx, targets)
	r.clock.Add(-time.Second)
	r.wantMissing(t, targets, 20, "clock stepped back")
}

func TestReadAheadSweeps(t *testing.T) {
	targets, seq := cacheTargets(200, "/ns/a", "/ns/b")
	r := newCacheRig(t, seq)
	ctx := context.Background()
	r.p.ReadAhead(ctx, targets[:100])
	r.clock.Add(SeqCacheTTL + time.Second)
	for i := range targets {
		targets[i].QuietSince = r.clock.Now().Add(-time.Second)
	}
	if got := r.p.ReadAhead(ctx, targets[100:]); got != 100 {
		t.Fatalf("cached %d, want 100", got)
	}
	if r.p.cache.n != 100 {
		t.Errorf("cache holds %d entries, want 100: the expired ones were not swept", r.p.cache.n)
	}
	// Sweeps are at most once a minute: entries that expire in between
	// stay until the next.
	r.p.ReadAhead(ctx, targets[:10]) // read at R
	r.clock.Add(SeqCacheTTL - 10*time.Second)
	r.p.ReadAhead(ctx, nil) // sweeps: nothing expired yet
	r.clock.Add(20 * time.Second)
	r.p.ReadAhead(ctx, nil) // expired, but swept 20 s ago
	if r.p.cache.n != 110 {
		t.Errorf("cache holds %d entries, want 110: swept twice within a minute", r.p.cache.n)
	}
	r.clock.Add(41 * time.Second)
	r.p.ReadAhead(ctx, nil)
	if r.p.cache.n != 0 || len(r.p.cache.ns) != 0 {
		t.Errorf("cache holds %d entries in %d namespaces, want none a minute after the last sweep", r.p.cache.n, len(r.p.cache.ns))
	}
}

func TestReadAheadBound(t *testing.T) {
	targets, seq := cacheTargets(300, "/ns/a", "/ns/b")
	r := newCacheRig(t, seq)
	r.p.cache.max = 100
	ctx := context.Background()
	if got := r.p.ReadAhead(ctx, targets); got != 100 {
		t.Fatalf("cached %d, want the bound, 100", got)
	}
	asked := 0
	for _, c := range seq.Calls() {
		asked += len(c.Cookies)
	}
	if asked != 100 || r.p.cache.n != 100 {
		t.Errorf("asked for %d cookies, cached %d; want 100 each", asked, r.p.cache.n)
	}
	r.wantMissing(t, targets, 200, "with the cache full")
	// Full: nothing is read until room is made.
	calls := len(seq.Calls())
	if got := r.p.ReadAhead(ctx, targets); got != 0 || len(seq.Calls()) != calls {
		t.Errorf("full cache: cached %d with %d more reads", got, len(seq.Calls())-calls)
	}
	// Using 30 states makes room for 30.
	r.p.ProbeAll(ctx, targets[:30])
	if got := r.p.ReadAhead(ctx, targets); got != 30 || r.p.cache.n != 100 {
		t.Errorf("after 30 probes: cached %d, holds %d; want 30 and 100", got, r.p.cache.n)
	}
	if MaxSeqCache != 1<<18 || New(Config{}, seq, nil).cache.max != MaxSeqCache {
		t.Errorf("default bound is not MaxSeqCache")
	}
}

func TestReadAheadGoneSockets(t *testing.T) {
	targets, seq := cacheTargets(10, "/ns/a")
	r := newCacheRig(t, seq)
	ctx := context.Background()
	delete(seq.state, targets[3].Cookie) // closed since the inventory
	if got := r.p.ReadAhead(ctx, targets); got != 9 {
		t.Fatalf("cached %d, want 9", got)
	}
	r.wantMissing(t, targets, 0, "a socket found gone stays gone")
	res := r.p.ProbeAll(ctx, targets)
	if n := len(seq.Calls()); n != 1 {
		t.Errorf("%d reads, want 1", n)
	}
	if !errors.Is(res[3].Err, ErrSocketGone) || res[3].Verdict != Unprobed {
		t.Errorf("gone socket: %+v", res[3])
	}
	if _, sent := r.probes()[targets[3].Local.Port()]; sent {
		t.Errorf("gone socket probed")
	}
	checkProbed(t, r, slices.Delete(slices.Clone(targets), 3, 4), slices.Delete(res, 3, 4),
		func(tg Target) SeqState { return stateOf(tg.Cookie) })
}

func TestReadAheadUnknownQuiet(t *testing.T) {
	targets, seq := cacheTargets(10, "/ns/a")
	r := newCacheRig(t, seq)
	ctx := context.Background()
	targets[2].QuietSince = time.Time{}
	if got := r.p.ReadAhead(ctx, targets); got != 9 {
		t.Fatalf("cached %d, want 9", got)
	}
	if c := seq.Calls(); len(c) != 1 || slices.Contains(c[0].Cookies, targets[2].Cookie) {
		t.Errorf("read ahead a state that could never be used: %v", c)
	}
	r.wantMissing(t, targets, 0, "ProbeAll reads targets with unknown QuietSince itself")
	res := r.p.ProbeAll(ctx, targets)
	if c := seq.Calls(); len(c) != 2 || !cmp.Equal(c[1].Cookies, []uint64{targets[2].Cookie}) {
		t.Errorf("reads %v, want a fresh one for cookie %d", c, targets[2].Cookie)
	}
	checkProbed(t, r, targets, res, func(tg Target) SeqState { return stateOf(tg.Cookie) })
}

func TestReadAheadNoOps(t *testing.T) {
	targets, _ := cacheTargets(10, "/ns/a")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		seq  SeqReader
	}{
		{"nil reader", nil},
		{"reader without sequence numbers", &fakeSeq{err: fmt.Errorf("iter: %w", ErrNoSeq)}},
	} {
		r := newCacheRig(t, tc.seq)
		if got := r.p.ReadAhead(ctx, targets); got != 0 {
			t.Errorf("%s: ReadAhead = %d", tc.name, got)
		}
		r.wantMissing(t, targets, 0, tc.name+" in blind mode")
	}

	_, seq := cacheTargets(10, "/ns/a")
	r := newCacheRig(t, seq)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if got := r.p.ReadAhead(cancelled, targets); got != 0 || len(seq.Calls()) != 0 {
		t.Errorf("cancelled: cached %d with %d reads", got, len(seq.Calls()))
	}
	r.p.ReadAhead(ctx, targets)
	r.p.Close()
	if got, missing := r.p.ReadAhead(ctx, targets), r.p.Missing(targets); got != 0 || missing != 0 || r.p.cache.n != 0 {
		t.Errorf("closed: cached %d, Missing %d, %d entries kept", got, missing, r.p.cache.n)
	}
}

func TestReadAheadReaderErrors(t *testing.T) {
	targets, seq := cacheTargets(10, "/ns/a")
	ctx := context.Background()

	// A transient error: nothing cached, ProbeAll reads by itself.
	seq.err = errors.New("transient")
	r := newCacheRig(t, seq)
	if got := r.p.ReadAhead(ctx, targets); got != 0 || r.p.cache.n != 0 {
		t.Errorf("transient error: cached %d", got)
	}
	if m, _ := r.p.Mode(); m != InWindow {
		t.Errorf("transient error: mode %s", m)
	}
	seq.err = nil
	res := r.p.ProbeAll(ctx, targets)
	if n := len(seq.Calls()); n != 2 {
		t.Errorf("%d reads, want 2", n)
	}
	checkProbed(t, r, targets, res, func(tg Target) SeqState { return stateOf(tg.Cookie) })

	// ErrNoSeq turns the prober blind for good, cached states with it.
	_, seq2 := cacheTargets(10, "/ns/a")
	r2 := newCacheRig(t, seq2)
	r2.p.ReadAhead(ctx, targets[:5])
	seq2.err = fmt.Errorf("iter: %w", ErrNoSeq)
	if got := r2.p.ReadAhead(ctx, targets); got != 0 {
		t.Errorf("ErrNoSeq: cached %d", got)
	}
	if m, _ := r2.p.Mode(); m != Blind || r2.p.cache.n != 0 || r2.p.Missing(targets) != 0 {
		t.Errorf("after ErrNoSeq: mode %s, %d entries, Missing %d", m, r2.p.cache.n, r2.p.Missing(targets))
	}
	if res := r2.p.ProbeAll(ctx, targets); res[0].Mode != Blind || res[0].Verdict != Alive {
		t.Errorf("after ErrNoSeq: %+v", res[0])
	}

	// A panicking reader is an error like another.
	r3 := newCacheRig(t, panicSeq{})
	if got := r3.p.ReadAhead(ctx, targets); got != 0 {
		t.Errorf("panicking reader: cached %d", got)
	}
}

// TestReadAheadConcurrent runs read aheads, probes and Missing at once for
// the race detector; every probe must carry its own socket's numbers.
func TestReadAheadConcurrent(t *testing.T) {
	targets, seq := cacheTargets(600, "/ns/a", "/ns/b", "/ns/c")
	r := newCacheRig(t, seq)
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]Result, len(targets))
	for w := range 3 {
		wg.Go(func() {
			for i := w * 200; i < (w+1)*200; i += 50 {
				if r.p.Missing(targets[i:i+50]) > 0 {
					r.p.ReadAhead(ctx, targets[i:min(i+300, len(targets))])
				}
				copy(results[i:], r.p.ProbeAll(ctx, targets[i:i+50]))
			}
		})
	}
	wg.Wait()
	checkProbed(t, r, targets, results, func(tg Target) SeqState { return stateOf(tg.Cookie) })
}

// BenchmarkReadAheadBookkeeping measures what the cache adds to a round of
// 20 000 targets, the reader's pass left out: one ReadAhead that caches
// them, then per 512-target chunk a Missing and the take in ProbeAll.
func BenchmarkReadAheadBookkeeping(b *testing.B) {
	targets, seq := cacheTargets(20000, "/ns/a", "/ns/b")
	p := newFakeProber(b, Config{}, seq, nil) // the fake namespaces cannot be pinned
	p.now = func() time.Time { return cacheT0 }
	p.cache = newSeqCache(cacheT0.Add(-time.Hour))
	idx := make([]int, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		p.ReadAhead(context.Background(), targets)
		for start := 0; start < len(targets); start += 512 {
			chunk := targets[start:min(start+512, len(targets))]
			if p.Missing(chunk) > 0 {
				b.Fatal("missing states")
			}
			idx = idx[:0]
			for i := range chunk {
				if chunk[i].NetnsPath == "/ns/a" {
					idx = append(idx, i)
				}
			}
			p.takeCached("/ns/a", chunk, idx)
			idx = idx[:0]
			for i := range chunk {
				if chunk[i].NetnsPath == "/ns/b" {
					idx = append(idx, i)
				}
			}
			p.takeCached("/ns/b", chunk, idx)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(targets)), "ns/target")
}
