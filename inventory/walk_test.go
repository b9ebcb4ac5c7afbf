package inventory

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/inventory/bpfwalk"
)

func TestJiffies(t *testing.T) {
	for _, c := range []struct {
		j        uint32
		hz       int
		ms, usec uint32
	}{
		{0, 1000, 0, 0}, {1, 1000, 1, 1000}, {200, 1000, 200, 200000},
		{1, 250, 4, 4000}, {50, 250, 200, 200000}, {1, 300, 4, 3334}, {7, 100, 70, 70000},
		{1, 0, 0, 0},
	} {
		if got := jiffiesToMsecs(c.j, c.hz); got != c.ms {
			t.Errorf("jiffiesToMsecs(%d, HZ %d) = %d, want %d", c.j, c.hz, got, c.ms)
		}
		if got := jiffiesToUsecs(c.j, c.hz); got != c.usec {
			t.Errorf("jiffiesToUsecs(%d, HZ %d) = %d, want %d", c.j, c.hz, got, c.usec)
		}
	}
}

// TestJiffiesSince: a stamp made after the walk read its clock (a busy
// socket) is 0 ago; wrapped and old stamps convert as the kernel's do.
func TestJiffiesSince(t *testing.T) {
	for _, c := range []struct {
		now, stamp uint32
		hz         int
		want       uint32
	}{
		{100, 100, 250, 0},
		{100, 50, 250, 200},
		{100, 0xffffffff - 99, 250, 800},         // tcp_jiffies32 wrapped between them
		{100, 105, 250, 0},                       // 20 ms after the walk's clock: the flake's 4294967276 ms
		{0xfffffffe, 3, 1000, 0},                 // after the clock, across the wrap
		{100, 100 + 60*250, 250, 0},              // walkSkew ahead: still the walk's
		{100, 100 + 60*250 + 1, 250, 4294907292}, // further: as tcp_get_info converts it (u32)
		{100, 105, 0, 0},
	} {
		if got := jiffiesSince(c.now, c.stamp, c.hz); got != c.want {
			t.Errorf("jiffiesSince(now %d, stamp %d, HZ %d) = %d ms, want %d", c.now, c.stamp, c.hz, got, c.want)
		}
	}
}

func TestSocketFromRecord(t *testing.T) {
	full := bpfwalk.Record{
		Cookie: 42, Now: 1<<32 + 100, BytesAcked: 1001, BytesReceived: 2002,
		Netns: 4026532000, Inode: 555, UID: 1000, Ifindex: 2, TimerLeft: 25, RQueue: 3, WQueue: 4,
		RTO: 50, SndMSS: 1448, RcvMSS: 536, Unacked: 1, Lost: 0, RetransOut: 1,
		// tcp_jiffies32 wraps: now is 100, the stamps are just before the wrap.
		LSndTime: 0xffffffff - 99, LRcvTime: 50, RcvTstamp: 100, SRTTUs: 800, MdevUs: 400,
		SndCwnd: 10, TotalRetrans: 3, SndWnd: 65535, RcvWnd: 64000, SndUna: 1, SndNxt: 2, RcvNxt: 3,
		Family: FamilyInet, State: uint8(StateEstablished), Timer: uint8(TimerRetransmit), Retrans: 2,
		CAState: 1, Retransmits: 2, Probes: 0, Backoff: 1, Options: 7, SndWScale: 7, RcvWScale: 9,
		Flags: bpfwalk.FlagInfo, SPort: 5000, DPort: 443,
	}
	copy(full.Src[:], []byte{192, 0, 2, 1})
	copy(full.Dst[:], []byte{198, 51, 100, 7})
	want := Socket{
		Netns: 4026532000, Family: FamilyInet, State: StateEstablished, Timer: TimerRetransmit, Retrans: 2,
		Expires: 100, RQueue: 3, WQueue: 4, UID: 1000, Inode: 555, Cookie: 42, Ifindex: 2,
		Local:  netip.MustParseAddrPort("192.0.2.1:5000"),
		Remote: netip.MustParseAddrPort("198.51.100.7:443"),
		Info: TCPInfo{
			Len: walkInfoLen, State: 1, CAState: 1, Retransmits: 2, Backoff: 1, Options: 7,
			SndWScale: 7, RcvWScale: 9, RTO: 200000, SndMSS: 1448, RcvMSS: 536, Unacked: 1, Retrans: 1,
			LastDataSent: 800, LastDataRecv: 200, LastAckRecv: 0, RTT: 100, RTTVar: 100,
			SndCwnd: 10, TotalRetrans: 3,
		},
	}
	want.Info.SetOptional(1001, 2002, 65535, 64000)

	tw := bpfwalk.Record{Cookie: 9, Netns: 1, Family: FamilyInet6, State: uint8(StateTimeWait), Timer: uint8(TimerTimeWait), TimerLeft: 15000, SPort: 80, DPort: 40000}
	copy(tw.Src[:], netip.MustParseAddr("2001:db8::1").AsSlice())
	copy(tw.Dst[:], netip.MustParseAddr("::ffff:192.0.2.9").AsSlice())
	wantTW := Socket{
		Netns: 1, Family: FamilyInet6, State: StateTimeWait, Timer: TimerTimeWait, Expires: 60000, Cookie: 9,
		Local:  netip.MustParseAddrPort("[2001:db8::1]:80"),
		Remote: netip.MustParseAddrPort("[::ffff:192.0.2.9]:40000"),
	}

	for _, c := range []struct {
		name string
		r    bpfwalk.Record
		hz   int
		want Socket
	}{{"established inet", full, 250, want}, {"time-wait inet6", tw, 250, wantTW}} {
		var got Socket
		if err := socketFromRecord(&c.r, c.hz, &got); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(TCPInfo{}), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}

	// Listeners: tcp_get_info reports the state, snd_cwnd and the accept
	// queue only.
	ln := full
	ln.State, ln.Timer, ln.Retrans, ln.TimerLeft = uint8(StateListen), 0, 0, 0
	var got Socket
	if err := socketFromRecord(&ln, 250, &got); err != nil {
		t.Fatal(err)
	}
	wantInfo := TCPInfo{Len: walkInfoLen, State: uint8(StateListen), SndCwnd: 10, Unacked: 1}
	if diff := cmp.Diff(wantInfo, got.Info, cmp.AllowUnexported(TCPInfo{})); diff != "" {
		t.Errorf("listener's tcp_info (-want +got):\n%s", diff)
	}

	bad := full
	bad.Family = 1
	var s Socket
	if err := socketFromRecord(&bad, 250, &s); err == nil {
		t.Error("family 1 accepted")
	}
}

func TestNeedsCookie(t *testing.T) {
	for _, c := range []struct {
		r    bpfwalk.Record
		want bool
	}{
		{bpfwalk.Record{Cookie: 1, State: 1, Flags: bpfwalk.FlagInfo}, false},
		{bpfwalk.Record{State: 1, Flags: bpfwalk.FlagInfo}, true},
		{bpfwalk.Record{State: uint8(StateTimeWait)}, true},
		{bpfwalk.Record{State: uint8(StateSynRecv)}, false},                         // request socket
		{bpfwalk.Record{State: uint8(StateSynRecv), Flags: bpfwalk.FlagInfo}, true}, // full socket (fast open)
	} {
		if got := needsCookie(c.r.Cookie, c.r.State, c.r.Flags); got != c.want {
			t.Errorf("needsCookie(%+v) = %v, want %v", c.r, got, c.want)
		}
	}
}

// FuzzSocketFromRecord: any record converts without panicking, fails only
// on a family that is neither inet nor inet6, and keeps the identity and
// the ports it was given.
func FuzzSocketFromRecord(f *testing.F) {
	s := bpfwalk.Record{Cookie: 3, Netns: 7, Family: FamilyInet6, State: 1, Flags: bpfwalk.FlagInfo, SPort: 80, DPort: 9}
	f.Add(bpfwalk.AppendRecord(nil, &s), 250)
	f.Add(make([]byte, bpfwalk.RecordLen), 1000)
	f.Fuzz(func(t *testing.T, b []byte, hz int) {
		var r bpfwalk.Record
		if r.Decode(b) != nil {
			return
		}
		var sk Socket
		err := socketFromRecord(&r, hz, &sk)
		if (err != nil) != (r.Family != FamilyInet && r.Family != FamilyInet6) {
			t.Fatalf("family %d: err %v", r.Family, err)
		}
		if err != nil {
			return
		}
		if sk.Cookie != r.Cookie || sk.Netns != uint64(r.Netns) || sk.Local.Port() != r.SPort || sk.Remote.Port() != r.DPort {
			t.Fatalf("identity or ports changed: %+v from %+v", sk, r)
		}
		if sk.Info.Valid() != (r.Flags&bpfwalk.FlagInfo != 0) {
			t.Fatalf("tcp_info valid %v with flags %#x", sk.Info.Valid(), r.Flags)
		}
	})
}

// TestWalkUnavailable: when the walk cannot load, the Scanner says so once
// in the log and lists sockets with sock_diag.
func TestWalkUnavailable(t *testing.T) {
	fail := func() (oneWalker, func(*Namespace) (bool, error), error) {
		return nil, nil, errors.New("no BTF here")
	}
	var logBuf bytes.Buffer
	s := NewScanner(slog.New(slog.NewTextHandler(&logBuf, nil)), ScannerOptions{OneWalk: true, openWalker: fail})
	defer s.Close()
	if s.Source() != SourceSockDiag {
		t.Errorf("Source() = %q, want %q", s.Source(), SourceSockDiag)
	}
	if n := strings.Count(logBuf.String(), "no BTF here"); n != 1 || !strings.Contains(logBuf.String(), "level=WARN") {
		t.Errorf("want one warning with the reason, got:\n%s", logBuf.String())
	}
}
