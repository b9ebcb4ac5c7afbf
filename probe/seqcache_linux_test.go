package probe

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// passCounter counts the calls that reach a SeqReader.
type passCounter struct {
	SeqReader
	calls atomic.Int32
}

func (c *passCounter) ReadSeq(ctx context.Context, ns string, cookies []uint64) (map[uint64]SeqState, error) {
	c.calls.Add(1)
	return c.SeqReader.ReadSeq(ctx, ns, cookies)
}

// TestReadAheadOnTestNetwork reads idle healthy connections ahead through
// the real iterator, then probes them through the conntrack router: one pass
// serves every probe, and every peer answers the cached numbers.
func TestReadAheadOnTestNetwork(t *testing.T) {
	needRoot(t)
	it, err := NewIterReader()
	if errors.Is(err, ErrNoSeq) {
		t.Skipf("BPF TCP iterator unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { it.Close() })
	seq := &passCounter{SeqReader: it}

	n := testnet.New(t)
	var targets []Target
	for _, network := range networks {
		for range 3 {
			server, client := n.Pair(t, network)
			exchange(t, server, client)
			targets = append(targets, targetOf(t, n, server))
		}
	}
	quiet := time.Now() // every exchange above has returned
	for i := range targets {
		targets[i].QuietSince = quiet
	}
	time.Sleep(10 * time.Millisecond) // the read must start strictly after quiet

	p := New(fastConfig(), seq, nil)
	defer p.Close()
	ctx := context.Background()
	if got := p.Missing(targets); got != len(targets) {
		t.Fatalf("Missing = %d before ReadAhead, want %d", got, len(targets))
	}
	if got := p.ReadAhead(ctx, targets); got != len(targets) {
		t.Fatalf("ReadAhead cached %d states, want %d", got, len(targets))
	}
	if got := p.Missing(targets); got != 0 {
		t.Fatalf("Missing = %d after ReadAhead, want 0", got)
	}
	res := p.ProbeAll(ctx, targets)
	for i, r := range res {
		if r.Verdict != Alive || r.Mode != InWindow || !r.Confirmed {
			t.Errorf("%s→%s: %+v, want confirmed alive in_window", targets[i].Local, targets[i].Remote, r)
		}
	}
	if got := seq.calls.Load(); got != 1 {
		t.Errorf("the iterator was passed %d times, want once", got)
	}
}
