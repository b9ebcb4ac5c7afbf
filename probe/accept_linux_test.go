package probe

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/probe/internal/wire"
)

// TestPeerAnswerOnTheWire checks, against the real kernel, what a live
// Linux peer answers to our keepalive-shaped probe (seq SND.UNA−1, ack
// RCV.NXT−1 or RCV.NXT): a duplicate ACK whose sequence number is exactly
// our RCV.NXT and whose acknowledgement is exactly our SND.NXT, which the
// accept rules take. The reply is captured unfiltered (a blind watch).
func TestPeerAnswerOnTheWire(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	for _, network := range networks {
		for _, resetLocal := range []bool{false, true} {
			_, _, target := livePair(t, n, network)
			m, err := seq.ReadSeq(context.Background(), n.Server.Path, []uint64{target.Cookie})
			if err != nil || len(m) != 1 {
				t.Fatalf("ReadSeq: %v %v", m, err)
			}
			st := m[target.Cookie]
			conn, err := openRawConn(n.Server.Path, []uint16{target.Local.Port()})
			if err != nil {
				t.Fatal(err)
			}
			d := newDemux(conn, slog.New(slog.DiscardHandler))
			w, stop := d.watch(newFlowKey(target.Local, target.Remote), nil)
			p := sentProbe{seq: st.SndUna - 1, ack: st.RcvNxt - 1, id: 4242}
			if resetLocal {
				p.ack = st.RcvNxt
			}
			if target.Local.Addr().Is6() {
				p.id = 0
			}
			pkt, err := wire.AppendSegment(nil, wire.Segment{Src: target.Local, Dst: target.Remote, Seq: p.seq, Ack: p.ack, Flags: wire.FlagACK, Window: 512, ID: p.id})
			if err != nil {
				t.Fatal(err)
			}
			w.sent(p)
			if err := d.send(pkt, target.Remote.Addr(), route{}); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-w.ch:
				t.Logf("%s ResetLocal=%v: state SND.UNA %d SND.NXT %d RCV.NXT %d; peer answered seq %d ack %d flags %#x",
					network, resetLocal, st.SndUna, st.SndNxt, st.RcvNxt, r.Seq, r.Ack, r.Flags)
				if r.Kind != wire.ReplyACK || r.Seq != st.RcvNxt || r.Ack != st.SndNxt {
					t.Errorf("%s: peer answered %+v, want a pure ACK with seq RCV.NXT %d and ack SND.NXT %d", network, r, st.RcvNxt, st.SndNxt)
				}
				if ok, why := accept(r, []sentProbe{p}, &st); !ok {
					t.Errorf("%s: accept refused the live peer's answer: %s", network, why)
				}
			case <-time.After(2 * time.Second):
				t.Errorf("%s: no answer from a live peer", network)
			}
			stop()
			if _, _, err := d.close(); err != nil {
				t.Error(err)
			}
			time.Sleep(MinInterval) // the peer's answer budget
		}
	}
}
