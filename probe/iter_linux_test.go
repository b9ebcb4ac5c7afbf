package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/bpftest"
	"github.com/ghostd/ghostd/internal/testnet"
)

// The tests in this file load the real program into the real kernel; they
// open loopback connections in namespaces they create and compare what the
// iterator reports with the segments captured on the wire.

func iterReader(t testing.TB) *IterReader {
	t.Helper()
	return bpftest.Load(t, "NewIterReader", NewIterReader)
}

func iterCookie(t testing.TB, c any) uint64 {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("iterCookie: %T", c)
	}
	return testnet.Cookie(t, sc)
}

func TestIterMatchesWire(t *testing.T) {
	r := iterReader(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			ns := testnet.NewNS(t, "it")
			capt := captureLo(t, ns)
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln := ns.Listen(t, network, addr)
			conn := iterDial(t, ns, ln)
			cp, sp := iterPort(conn.client.LocalAddr()), iterPort(conn.server.LocalAddr())

			iterSend(t, conn.client, conn.server, 1000)
			iterSend(t, conn.server, conn.client, 3000)
			var seen []wireSeg
			cli, srv := iterReadQuiet(t, r, ns, capt, &seen, conn)
			c2s, s2c := iterDirection(seen, cp, sp), iterDirection(seen, sp, cp)
			if len(c2s.segs) < 3 || len(s2c.segs) < 2 {
				t.Fatalf("captured too little: %d client and %d server segments", len(c2s.segs), len(s2c.segs))
			}
			iterCheckWire(t, "client", cli, c2s, s2c)
			iterCheckWire(t, "server", srv, s2c, c2s)
			if cli.SndNxt-c2s.synOpt.seq != 1+1000 || srv.SndNxt-s2c.synOpt.seq != 1+3000 {
				t.Errorf("bytes sent since the SYN: client %d, server %d; want 1001 and 3001",
					cli.SndNxt-c2s.synOpt.seq, srv.SndNxt-s2c.synOpt.seq)
			}

			// Sending N bytes advances SND.NXT by exactly N, and the peer's RCV.NXT too.
			const n = 12345
			iterSend(t, conn.client, conn.server, n)
			cli2, srv2 := iterReadQuiet(t, r, ns, capt, &seen, conn)
			if got := cli2.SndNxt - cli.SndNxt; got != n {
				t.Errorf("client SndNxt advanced by %d after sending %d bytes", got, n)
			}
			if got := srv2.RcvNxt - srv.RcvNxt; got != n {
				t.Errorf("server RcvNxt advanced by %d after receiving %d bytes", got, n)
			}
			if cli2.SndUna != cli2.SndNxt {
				t.Errorf("client SndUna %d != SndNxt %d after the ACK", cli2.SndUna, cli2.SndNxt)
			}
			c2s, s2c = iterDirection(seen, cp, sp), iterDirection(seen, sp, cp)
			iterCheckWire(t, "client after send", cli2, c2s, s2c)
			iterCheckWire(t, "server after send", srv2, s2c, c2s)
		})
	}
}

func TestIterUnackedData(t *testing.T) {
	// SND.UNA stays behind SND.NXT while the peer's ACKs do not arrive
	// (nftables drops everything the server sends).
	r := iterReader(t)
	ns := testnet.NewNS(t, "it")
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0")
	conn := iterDial(t, ns, ln)
	iterSend(t, conn.client, conn.server, 100)
	iterQuiet(t, conn.client, conn.server)
	ck := iterCookie(t, conn.client)
	before, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ck})
	if err != nil {
		t.Fatal(err)
	}
	// Drop everything the server port sends: its ACKs never arrive.
	sp := iterPort(conn.server.LocalAddr())
	ns.Nft(t, fmt.Sprintf("table inet gdit {\n chain out {\n  type filter hook output priority 0;\n  tcp sport %d drop\n }\n}\n", sp))
	if _, err := conn.client.Write(make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	after, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ck})
	if err != nil {
		t.Fatal(err)
	}
	b, a := before[ck], after[ck]
	if a.SndNxt-b.SndNxt != 500 || a.SndUna != b.SndUna {
		t.Errorf("with ACKs dropped: SndNxt advanced %d (want 500), SndUna moved %d (want 0)", a.SndNxt-b.SndNxt, a.SndUna-b.SndUna)
	}
}

func TestIterWantedOnly(t *testing.T) {
	r := iterReader(t)
	ns := testnet.NewNS(t, "it")
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0")
	a, b := iterDial(t, ns, ln), iterDial(t, ns, ln)
	ca, cb := iterCookie(t, a.client), iterCookie(t, b.client)
	cl := iterCookie(t, ln.(*net.TCPListener))

	got, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ca, cl, ca, 0, 1<<64 - 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[ca]; !ok || len(got) != 1 {
		t.Errorf("wanted %d (and a listener, a duplicate, bogus cookies); got %v", ca, iterKeys(got))
	}
	if _, ok := got[cb]; ok {
		t.Errorf("unwanted cookie %d returned", cb)
	}

	// The map is emptied after a pass: the next pass does not report ca.
	got, err = r.ReadSeq(context.Background(), ns.Path, []uint64{cb})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{cb}, iterKeys(got)); diff != "" {
		t.Errorf("second pass (-want +got):\n%s", diff)
	}

	got, err = r.ReadSeq(context.Background(), ns.Path, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("no cookies: got %v, %v", got, err)
	}
}

func TestIterSkipsTimeWait(t *testing.T) {
	r := iterReader(t)
	ns := testnet.NewNS(t, "it")
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0")
	c := iterDial(t, ns, ln)
	ck := iterCookie(t, c.client)
	c.client.Close() // active close: the client's socket ends in TIME_WAIT
	c.server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server read after client close: %v", err)
	}
	c.server.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(ns.Exec(t, "ss", "-tanH", "state", "time-wait"), "127.0.0.1") {
		if time.Now().After(deadline) {
			t.Fatal("no TIME_WAIT socket appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, err := r.ReadSeq(context.Background(), ns.Path, []uint64{ck})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("TIME_WAIT socket reported: %+v", got)
	}
}

func TestIterNamespaces(t *testing.T) {
	r := iterReader(t)
	nsA, nsB := testnet.NewNS(t, "it"), testnet.NewNS(t, "it")
	lnA := nsA.Listen(t, "tcp4", "127.0.0.1:0")
	lnB := nsB.Listen(t, "tcp4", "127.0.0.1:0")
	a, b := iterDial(t, nsA, lnA), iterDial(t, nsB, lnB)
	// The same 4-tuple can exist in both namespaces; only cookies tell them apart.
	ca := []uint64{iterCookie(t, a.client), iterCookie(t, a.server)}
	cb := []uint64{iterCookie(t, b.client), iterCookie(t, b.server)}
	all := append(append([]uint64{}, ca...), cb...)

	for _, tc := range []struct {
		name, path string
		want       []uint64
	}{
		{"A", nsA.Path, ca},
		{"B", nsB.Path, cb},
		{"own", "", nil},
	} {
		got, err := r.ReadSeq(context.Background(), tc.path, all)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := append([]uint64{}, tc.want...)
		if want == nil {
			want = []uint64{}
		}
		if diff := cmp.Diff(iterSorted(want), iterKeys(got)); diff != "" {
			t.Errorf("namespace %s (-want +got):\n%s", tc.name, diff)
		}
	}

	// The calling thread's namespace is untouched by the passes.
	var own, after unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := r.ReadSeq(context.Background(), nsA.Path, ca); err != nil {
			t.Fatal(err)
		}
		if err := unix.Stat("/proc/thread-self/ns/net", &after); err != nil {
			t.Fatal(err)
		}
		if after.Ino != own.Ino {
			t.Fatalf("caller's thread left in netns %d, want %d", after.Ino, own.Ino)
		}
	}

	if _, err := r.ReadSeq(context.Background(), filepath.Join(t.TempDir(), "missing"), all); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing netns path: %v, want ErrNotExist", err)
	}
}

// TestIterConcurrent runs passes over two namespaces from several goroutines
// at once: each caller gets exactly its namespace's sockets.
func TestIterConcurrent(t *testing.T) {
	r := iterReader(t)
	var nss [2]*testnet.NS
	var want [2][]uint64
	var all []uint64
	for i := range nss {
		nss[i] = testnet.NewNS(t, "it")
		ln := nss[i].Listen(t, "tcp4", "127.0.0.1:0")
		for range 3 {
			c := iterDial(t, nss[i], ln)
			want[i] = append(want[i], iterCookie(t, c.client), iterCookie(t, c.server))
		}
		all = append(all, want[i]...)
	}
	errc := make(chan error, 8)
	for g := range cap(errc) {
		go func() {
			i := g % 2
			for range 3 {
				got, err := r.ReadSeq(context.Background(), nss[i].Path, all)
				if err != nil {
					errc <- err
					return
				}
				if diff := cmp.Diff(iterSorted(want[i]), iterKeys(got)); diff != "" {
					errc <- fmt.Errorf("namespace %d (-want +got):\n%s", i, diff)
					return
				}
			}
			errc <- nil
		}()
	}
	for range cap(errc) {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// iterSnapshot is the part of tcp_info that a read-only observer must not change.
type iterSnapshot struct {
	State, Options                             uint8
	Retransmits, Probes, Backoff               uint8
	Snd_mss, Rcv_mss, Unacked, Sacked, Lost    uint32
	Retrans, Fackets, Pmtu, Rcv_ssthresh       uint32
	Snd_ssthresh, Snd_cwnd, Advmss, Reordering uint32
	Rcv_space, Total_retrans                   uint32
	Bytes_acked, Bytes_received                uint64
	Segs_out, Segs_in, Data_segs_in            uint32
	Data_segs_out                              uint32
	Delivered, Bytes_sent, Bytes_retrans       uint64
	Snd_wnd, Rcv_wnd                           uint32
}

func iterSnap(t testing.TB, c net.Conn) iterSnapshot {
	i := testnet.TCPInfo(t, c)
	return iterSnapshot{
		State: i.State, Options: i.Options,
		Retransmits: i.Retransmits, Probes: i.Probes, Backoff: i.Backoff,
		Snd_mss: i.Snd_mss, Rcv_mss: i.Rcv_mss, Unacked: i.Unacked, Sacked: i.Sacked, Lost: i.Lost,
		Retrans: i.Retrans, Fackets: i.Fackets, Pmtu: i.Pmtu, Rcv_ssthresh: i.Rcv_ssthresh,
		Snd_ssthresh: i.Snd_ssthresh, Snd_cwnd: i.Snd_cwnd, Advmss: i.Advmss, Reordering: i.Reordering,
		Rcv_space: i.Rcv_space, Total_retrans: i.Total_retrans,
		Bytes_acked: i.Bytes_acked, Bytes_received: i.Bytes_received,
		Segs_out: i.Segs_out, Segs_in: i.Segs_in, Data_segs_in: i.Data_segs_in, Data_segs_out: i.Data_segs_out,
		Delivered: uint64(i.Delivered), Bytes_sent: i.Bytes_sent, Bytes_retrans: i.Bytes_retrans,
		Snd_wnd: i.Snd_wnd, Rcv_wnd: i.Rcv_wnd,
	}
}

func TestIterReadOnly(t *testing.T) {
	r := iterReader(t)
	ns := testnet.NewNS(t, "it")
	capt := captureLo(t, ns)
	ln := ns.Listen(t, "tcp4", "127.0.0.1:0")
	conn := iterDial(t, ns, ln)
	iterSend(t, conn.client, conn.server, 2000)
	iterSend(t, conn.server, conn.client, 2000)
	iterQuiet(t, conn.client, conn.server)
	time.Sleep(50 * time.Millisecond)
	capt.drain(t)

	cookies := []uint64{iterCookie(t, conn.client), iterCookie(t, conn.server)}
	beforeC, beforeS := iterSnap(t, conn.client), iterSnap(t, conn.server)
	first, err := r.ReadSeq(context.Background(), ns.Path, cookies)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		got, err := r.ReadSeq(context.Background(), ns.Path, cookies)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(first, got); diff != "" {
			t.Fatalf("a later pass saw different state (-first +later):\n%s", diff)
		}
	}
	if diff := cmp.Diff(beforeC, iterSnap(t, conn.client)); diff != "" {
		t.Errorf("client tcp_info changed by reading (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(beforeS, iterSnap(t, conn.server)); diff != "" {
		t.Errorf("server tcp_info changed by reading (-before +after):\n%s", diff)
	}
	if segs := capt.drain(t); len(segs) != 0 {
		t.Errorf("reading sent %d segments: %+v", len(segs), segs)
	}
	// The owners still work.
	iterSend(t, conn.client, conn.server, 10)
	iterSend(t, conn.server, conn.client, 10)
}

func TestIterContext(t *testing.T) {
	r := iterReader(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.ReadSeq(ctx, "", []uint64{1}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
}

func TestIterClose(t *testing.T) {
	needRoot(t)
	r, err := NewIterReader()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.ReadSeq(context.Background(), "", []uint64{1}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadSeq after Close: %v", err)
	}
	var zero IterReader
	if _, err := zero.ReadSeq(context.Background(), "", []uint64{1}); !errors.Is(err, ErrNoSeq) {
		t.Errorf("ReadSeq on a zero IterReader: %v", err)
	}
}
