package probe

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/probe/internal/wire"
)

// iterConn is one loopback connection inside a test namespace.
type iterConn struct {
	client, server net.Conn
}

func iterDial(t testing.TB, ns *testnet.NS, ln net.Listener) iterConn {
	t.Helper()
	c, s := ns.Connect(t, ln)
	return iterConn{client: c, server: s}
}

// iterSend writes n bytes from one end and reads them at the other.
func iterSend(t testing.TB, from, to net.Conn, n int) {
	t.Helper()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i)
	}
	deadline := time.Now().Add(5 * time.Second)
	from.SetDeadline(deadline)
	to.SetDeadline(deadline)
	if _, err := from.Write(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(to, buf); err != nil {
		t.Fatal(err)
	}
}

// iterQuiet waits until neither end has unacknowledged data.
func iterQuiet(t testing.TB, conns ...net.Conn) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		busy := false
		for _, c := range conns {
			busy = busy || testnet.TCPInfo(t, c).Unacked != 0
		}
		if !busy {
			return
		}
		if time.Now().After(end) {
			t.Fatal("connections never went quiet")
		}
	}
}

// iterWire is what the capture says about one direction of a connection.
type iterWire struct {
	segs   []wireSeg // from → to
	synOpt wireSeg   // the SYN or SYN-ACK sent in this direction
	last   wireSeg
	tsvals map[uint32]bool
}

func iterDirection(segs []wireSeg, from, to uint16) iterWire {
	w := iterWire{tsvals: map[uint32]bool{}}
	for _, s := range segs {
		if s.src.Port() != from || s.dst.Port() != to {
			continue
		}
		w.segs = append(w.segs, s)
		if s.flags&wire.FlagSYN != 0 {
			w.synOpt = s
		}
		if s.hasTS {
			w.tsvals[s.ts.Val] = true
		}
		w.last = s
	}
	return w
}

func iterPort(a net.Addr) uint16 { return uint16(a.(*net.TCPAddr).Port) }

// iterReadQuiet reads the two ends of conn once no segment is in flight, and
// returns the wire as captured from the start up to that read.
func iterReadQuiet(t *testing.T, r *IterReader, ns *testnet.NS, capt *wireCapture, seen *[]wireSeg, conn iterConn) (cli, srv SeqState) {
	t.Helper()
	ck, sk := iterCookie(t, conn.client), iterCookie(t, conn.server)
	for try := 0; ; try++ {
		iterQuiet(t, conn.client, conn.server)
		time.Sleep(50 * time.Millisecond) // let delayed ACKs and window updates out
		*seen = append(*seen, capt.drain(t)...)
		got, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ck, sk})
		if err != nil {
			t.Fatal(err)
		}
		more := capt.drain(t)
		*seen = append(*seen, more...)
		if len(more) == 0 {
			if len(got) != 2 {
				t.Fatalf("ReadSeq returned %d of 2 sockets: %+v", len(got), got)
			}
			return got[ck], got[sk]
		}
		if try == 10 {
			t.Fatalf("segments kept arriving around the read: %+v", more)
		}
	}
}

// iterCheckWire compares one end's SeqState with the segments it sent (out)
// and received (in).
func iterCheckWire(t *testing.T, name string, st SeqState, out, in iterWire) {
	t.Helper()
	check := func(field string, want, got uint64) {
		t.Helper()
		if want != got {
			t.Errorf("%s %s: wire says %d, iterator %d", name, field, want, got)
		}
	}
	check("SndNxt (last sent seq+len)", uint64(out.last.end()), uint64(st.SndNxt))
	check("RcvNxt (last received seq+len)", uint64(in.last.end()), uint64(st.RcvNxt))
	check("SndUna (last ACK received)", uint64(in.last.ack), uint64(st.SndUna))
	check("SndWScale (peer's SYN option)", uint64(in.synOpt.wscale), uint64(st.SndWScale))
	check("RcvWScale (own SYN option)", uint64(out.synOpt.wscale), uint64(st.RcvWScale))
	check("SndWnd (peer's last window << scale)", uint64(in.last.win)<<st.SndWScale, uint64(st.SndWnd))
	check("RcvWnd >> scale (own last window)", uint64(out.last.win), uint64(st.RcvWnd>>st.RcvWScale))
	if !st.TSOK || !out.synOpt.hasTS || !in.synOpt.hasTS {
		t.Errorf("%s TSOK %v, SYN timestamps %v/%v", name, st.TSOK, out.synOpt.hasTS, in.synOpt.hasTS)
	}
	if !in.tsvals[st.TSRecent] {
		t.Errorf("%s TSRecent %d is not a TSval the peer sent (%v)", name, st.TSRecent, in.tsvals)
	}
	// Linux sends TSval = tcp clock (CLOCK_MONOTONIC in ms) + tsoffset.
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		t.Fatal(err)
	}
	age := uint32(now.Nano()/1e6) - (out.last.ts.Val - st.TSOffset)
	if age > 10_000 {
		t.Errorf("%s last TSval %d - TSOffset %d is %d ms away from CLOCK_MONOTONIC", name, out.last.ts.Val, st.TSOffset, age)
	}
}
