package inventory

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// fillWalkLab puts listeners, established connections with data queued
// both ways, a CLOSE_WAIT/FIN_WAIT2 pair and a TIME_WAIT socket in ns.
func fillWalkLab(t *testing.T, ns *testnet.NS, network, addr string) {
	t.Helper()
	ln := ns.Listen(t, network, addr)
	for range 3 {
		c, s := ns.Connect(t, ln)
		if _, err := c.Write(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		// 50 bytes the client never reads: its receive queue.
		if _, err := s.Write(make([]byte, 50)); err != nil {
			t.Fatal(err)
		}
	}
	// The client closes, the server does not: CLOSE_WAIT and FIN_WAIT2.
	c, s := ns.Connect(t, ln)
	c.Close()
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the peer's close: %v, want EOF", err)
	}
	ns.TimeWait(t, ln)
}

// halfOpen leaves a request socket (SYN_RECV, not yet accepted) in ns: the
// client's final ACK of the handshake to a fresh listener is dropped, so
// the server keeps retransmitting its SYN-ACK.
func halfOpen(t *testing.T, ns *testnet.NS) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nft missing (TEST_DEBS has nftables)")
		}
		t.Skip("nft missing: apt-get install nftables")
	}
	ln := ns.Listen(t, "tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ns.Nft(t, fmt.Sprintf(`table inet gd_walk_halfopen {
	chain out {
		type filter hook output priority filter; policy accept;
		tcp dport %d tcp flags & (syn | ack) == ack drop
	}
}
`, port))
	ns.Dial(t, "tcp", ln.Addr().String()) // done once the SYN-ACK is in
}

type scannedSocket struct {
	Socket
	at time.Time
}

// scanKeyed scans s and indexes the sockets by identity.
func scanKeyed(t *testing.T, s *Scanner, want string) map[Key]scannedSocket {
	t.Helper()
	got := map[Key]scannedSocket{}
	for _, r := range s.Scan(context.Background(), AllStates, func(ns *Namespace, sk *Socket) error {
		k := sk.Key()
		if _, dup := got[k]; dup {
			t.Errorf("%s: socket %v %v -> %v listed twice", want, k, sk.Local, sk.Remote)
		}
		got[k] = scannedSocket{*sk, time.Now()}
		return nil
	}) {
		if r.Err != nil {
			t.Fatalf("%s: scan %s: %v", want, r.Name, r.Err)
		}
		if r.Source != want {
			t.Fatalf("scan %s: source %q, want %q", r.Name, r.Source, want)
		}
	}
	return got
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// TestWalkMatchesSockDiag is the cross-check: in namespaces the test
// creates, the walk and sock_diag list the same sockets (listeners,
// established, CLOSE_WAIT, FIN_WAIT2, TIME_WAIT, a request socket; IPv4
// and IPv6) with the same fields, times within the time between the two
// scans.
func TestWalkMatchesSockDiag(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and load BPF programs")
	}
	a := testnet.NewNS(t, "wka")
	b := testnet.NewNS(t, "wkb")
	walk, diag := walkAndDiag(t, func(ns Namespace) bool { return ns.Inode == a.Inode || ns.Inode == b.Inode })

	// Sockets from before the first scan, and after it.
	fillWalkLab(t, a, "tcp", "127.0.0.1:0")
	scanKeyed(t, walk, SourceSockDiag) // each namespace's first scan is a dump
	fillWalkLab(t, a, "tcp6", "[::1]:0")
	fillWalkLab(t, b, "tcp", "127.0.0.2:0")
	halfOpen(t, b)

	viaDiag := scanKeyed(t, diag, SourceSockDiag)
	viaWalk := scanKeyed(t, walk, SourceWalk)
	tolerance := uint32(time.Since(viaDiag[firstKey(viaDiag)].at).Milliseconds()) + 1000
	t.Logf("%d sockets by sock_diag, %d by the walk; times compared within %d ms", len(viaDiag), len(viaWalk), tolerance)

	states := map[State]int{}
	for k, d := range viaDiag {
		states[d.State]++
		w, ok := viaWalk[k]
		if !ok {
			t.Errorf("sock_diag lists %s %v -> %v (cookie %d), the walk does not", d.State, d.Local, d.Remote, k.Cookie)
			continue
		}
		name := fmt.Sprintf("%s %v -> %v", d.State, d.Local, d.Remote)
		exact := []struct {
			field      string
			diag, walk any
		}{
			{"family", d.Family, w.Family}, {"state", d.State, w.State},
			{"local", d.Local, w.Local}, {"remote", d.Remote, w.Remote},
			{"inode", d.Inode, w.Inode}, {"uid", d.UID, w.UID}, {"ifindex", d.Ifindex, w.Ifindex},
			{"timer", d.Timer, w.Timer}, {"retrans", d.Retrans, w.Retrans},
			{"rqueue", d.RQueue, w.RQueue}, {"wqueue", d.WQueue, w.WQueue},
			{"has tcp_info", d.Info.Valid(), w.Info.Valid()},
		}
		if d.Info.Valid() && w.Info.Valid() {
			di, wi := &d.Info, &w.Info
			dAcked, _ := di.BytesAcked()
			wAcked, _ := wi.BytesAcked()
			dRecv, _ := di.BytesReceived()
			wRecv, _ := wi.BytesReceived()
			dSnd, _ := di.SndWnd()
			wSnd, _ := wi.SndWnd()
			dRcv, _ := di.RcvWnd()
			wRcv, _ := wi.RcvWnd()
			exact = append(exact, []struct {
				field      string
				diag, walk any
			}{
				{"tcpi_state", di.State, wi.State}, {"ca_state", di.CAState, wi.CAState},
				{"retransmits", di.Retransmits, wi.Retransmits}, {"probes", di.Probes, wi.Probes},
				{"backoff", di.Backoff, wi.Backoff}, {"options", di.Options, wi.Options},
				{"snd_wscale", di.SndWScale, wi.SndWScale}, {"rcv_wscale", di.RcvWScale, wi.RcvWScale},
				{"rto", di.RTO, wi.RTO}, {"snd_mss", di.SndMSS, wi.SndMSS}, {"rcv_mss", di.RcvMSS, wi.RcvMSS},
				{"unacked", di.Unacked, wi.Unacked}, {"lost", di.Lost, wi.Lost}, {"retrans", di.Retrans, wi.Retrans},
				{"rtt", di.RTT, wi.RTT}, {"rttvar", di.RTTVar, wi.RTTVar},
				{"snd_cwnd", di.SndCwnd, wi.SndCwnd}, {"total_retrans", di.TotalRetrans, wi.TotalRetrans},
				{"bytes_acked", dAcked, wAcked}, {"bytes_received", dRecv, wRecv},
				{"snd_wnd", dSnd, wSnd}, {"rcv_wnd", dRcv, wRcv},
			}...)
			for _, c := range []struct {
				field      string
				diag, walk uint32
			}{
				{"last_data_sent", di.LastDataSent, wi.LastDataSent},
				{"last_data_recv", di.LastDataRecv, wi.LastDataRecv},
				{"last_ack_recv", di.LastAckRecv, wi.LastAckRecv},
			} {
				if absDiff(c.diag, c.walk) > tolerance {
					t.Errorf("%s: %s %d ms by sock_diag, %d ms by the walk (tolerance %d)", name, c.field, c.diag, c.walk, tolerance)
				}
			}
		}
		for _, c := range exact {
			if c.diag != c.walk {
				t.Errorf("%s: %s %v by sock_diag, %v by the walk", name, c.field, c.diag, c.walk)
			}
		}
		if absDiff(d.Expires, w.Expires) > tolerance {
			t.Errorf("%s: timer expires in %d ms by sock_diag, %d ms by the walk", name, d.Expires, w.Expires)
		}
	}
	for k, w := range viaWalk {
		if _, ok := viaDiag[k]; !ok {
			t.Errorf("the walk lists %s %v -> %v (cookie %d), sock_diag does not", w.State, w.Local, w.Remote, k.Cookie)
		}
	}
	// The lab holds what the comparison is meant to cover.
	for st, min := range map[State]int{StateListen: 3, StateEstablished: 18, StateCloseWait: 3, StateFinWait2: 3, StateTimeWait: 3, StateSynRecv: 1} {
		if states[st] < min {
			t.Errorf("%d %s sockets compared, want at least %d (%v)", states[st], st, min, states)
		}
	}
}

// walkAndDiag returns two scanners of the namespaces mine selects, one on
// the BPF walk (failing the test when it does not load), one on sock_diag
// dumps; both are closed when the test ends.
func walkAndDiag(t *testing.T, mine func(Namespace) bool) (walk, diag *Scanner) {
	t.Helper()
	walk = NewScanner(nil, ScannerOptions{Select: mine, OneWalk: true})
	t.Cleanup(func() { walk.Close() })
	if walk.Source() != SourceWalk {
		t.Fatalf("Source() = %q: the BPF walk did not load", walk.Source())
	}
	diag = NewScanner(nil, ScannerOptions{Select: mine})
	t.Cleanup(func() { diag.Close() })
	return walk, diag
}

func firstKey(m map[Key]scannedSocket) Key {
	for k := range m {
		return k
	}
	return Key{}
}
