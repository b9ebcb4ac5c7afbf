package probe

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/probe/internal/wire"
)

// TestSpoofedACKsToThePeer: an off-path sender spoofs out-of-window ACKs to
// the peer "from" the probed host, one per 400 ms, so the peer's one answer
// per 500 ms (tcp_invalid_ratelimit) often goes to the spoofer rather than
// to our probe. The peer's answers to the spoofer still come to the probed
// 4-tuple carrying the connection's real numbers, and ghostd takes them as
// proof of life, on purpose: the attack can only make a connection look
// alive, never a ghost. The peer's TCPACKSkippedSeq counter shows that its
// answer budget really ran out.
func TestSpoofedACKsToThePeer(t *testing.T) {
	needRoot(t)
	seq := prSeqReader(t)
	n := testnet.New(t)
	atk := n.Attacker(t)
	for _, network := range networks {
		server, client := n.Pair(t, network)
		exchange(t, server, client)
		target := targetOf(t, n, server)
		skippedBefore := netstat(t, n.Client, "TCPACKSkippedSeq")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(400 * time.Millisecond)
			defer tick.Stop()
			for range 40 { // at most 16 s
				pkt, err := wire.AppendSegment(nil, wire.Segment{Src: target.Local, Dst: target.Remote,
					Seq: rand.Uint32(), Ack: rand.Uint32(), Flags: wire.FlagACK, Window: 512, ID: uint16(rand.Uint32())})
				if err == nil {
					err = atk.Send(pkt)
				}
				if err != nil {
					t.Errorf("attacker: %v", err)
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
		time.Sleep(time.Second)
		p := New(fastConfig(), seq, nil)
		var alive, firstUnanswered int
		const probes = 8
		for i := range probes {
			res, err := p.Probe(context.Background(), target)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict == Alive {
				alive++
			} else {
				t.Errorf("%s probe %d: %+v, want alive", network, i, res)
			}
			if res.Sent > 1 {
				firstUnanswered++
			}
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		}
		cancel()
		<-done
		p.Close()
		skipped := netstat(t, n.Client, "TCPACKSkippedSeq") - skippedBefore
		t.Logf("%s: %d of %d probes alive; %d needed more than one attempt; the peer skipped %d answers (TCPACKSkippedSeq); attacker sent %d",
			network, alive, probes, firstUnanswered, skipped, atk.Sent())
		if skipped == 0 {
			t.Errorf("%s: the peer never ran out of answers: the attack did not happen", network)
		}
		if tcpState(t, server) != 1 {
			t.Fatalf("%s: server socket no longer established", network)
		}
		exchange(t, server, client)
	}
}
