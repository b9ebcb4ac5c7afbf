package tracker

import (
	stdcmp "cmp"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ghostd/ghostd/inventory"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

const fullInfo = 280 // tcp_info length on 6.18

// sock returns an ESTABLISHED socket with a full tcp_info that just exchanged data.
func sock(cookie uint64, mods ...func(*inventory.Socket)) *inventory.Socket {
	s := &inventory.Socket{
		Netns: 4026531840, Family: inventory.FamilyInet, State: inventory.StateEstablished,
		Cookie: cookie,
		Local:  netip.MustParseAddrPort("198.51.100.2:7000"),
		Remote: netip.MustParseAddrPort("192.0.2.2:40000"),
	}
	s.Info.Len = fullInfo
	s.Info.State = uint8(inventory.StateEstablished)
	s.Info.LastDataRecv, s.Info.LastDataSent, s.Info.LastAckRecv = 100, 100, 100
	s.Info.SetOptional(1000, 1000, 65535, 65535)
	for _, m := range mods {
		m(s)
	}
	return s
}

func state(st inventory.State) func(*inventory.Socket) {
	return func(s *inventory.Socket) { s.State = st; s.Info.State = uint8(st) }
}
func timer(tm inventory.Timer, retrans uint8) func(*inventory.Socket) {
	return func(s *inventory.Socket) { s.Timer, s.Retrans = tm, retrans }
}
func backoff(b uint8) func(*inventory.Socket) {
	return func(s *inventory.Socket) { s.Info.Backoff, s.Info.Retransmits = b, b }
}
func quiet(recv, sent time.Duration) func(*inventory.Socket) {
	return func(s *inventory.Socket) {
		s.Info.LastDataRecv, s.Info.LastDataSent = uint32(recv.Milliseconds()), uint32(sent.Milliseconds())
	}
}
func lastAck(d time.Duration) func(*inventory.Socket) {
	return func(s *inventory.Socket) { s.Info.LastAckRecv = uint32(d.Milliseconds()) }
}
func infoLen(n uint16) func(*inventory.Socket) { return func(s *inventory.Socket) { s.Info.Len = n } }
func acked(n uint64) func(*inventory.Socket) {
	return func(s *inventory.Socket) { s.Info.SetOptional(n, 1000, 65535, 65535) }
}

// shrunk is a receiver that shut its window with data in flight: the kernel
// probes it from the retransmit timer with backoff but no retransmit count.
func shrunk(s *inventory.Socket) {
	s.Info.Backoff = 4
	s.Info.SetOptional(1000, 1000, 0, 65535)
}

func expires(d time.Duration) func(*inventory.Socket) {
	return func(s *inventory.Socket) { s.Expires = uint32(d.Milliseconds()) }
}

func netns(n uint64) func(*inventory.Socket) { return func(s *inventory.Socket) { s.Netns = n } }

func rs(r ...Reason) Reasons {
	var out Reasons
	for _, x := range r {
		out = out.With(x)
	}
	return out
}

// TestFirstSight classifies sockets the tracker has never seen.
func TestFirstSight(t *testing.T) {
	const (
		E  = inventory.StateEstablished
		CW = inventory.StateCloseWait
	)
	min := time.Minute
	tests := []struct {
		name       string
		s          *inventory.Socket
		want, unav Reasons
		remembered bool
	}{
		{name: "healthy", s: sock(1)},
		{name: "idle both ways", s: sock(1, quiet(61*time.Second, 61*time.Second)), want: rs(ReasonIdle), remembered: true},
		{name: "idle exactly the threshold", s: sock(1, quiet(min, min)), want: rs(ReasonIdle), remembered: true},
		{name: "idle just below", s: sock(1, quiet(min-time.Millisecond, 10*min))},
		{name: "upload-only with ACK progress", s: sock(1, quiet(10*min, 5*time.Second), lastAck(5*time.Second))},
		{name: "download-only", s: sock(1, quiet(5*time.Second, 10*min))},
		{name: "a probe's ACK does not make it alive", s: sock(1, quiet(10*min, 10*min), lastAck(time.Second)), want: rs(ReasonIdle), remembered: true},
		{name: "idle with delayed ACK timer", s: sock(1, quiet(2*min, 2*min), timer(inventory.TimerDelayedAck, 0)), want: rs(ReasonIdle), remembered: true},
		{name: "idle, keepalive armed on the kernel's defaults", s: sock(1, quiet(10*min, 10*min), timer(inventory.TimerKeepalive, 0), expires(110*min)), want: rs(ReasonIdle), remembered: true},
		{name: "keepalive armed, not idle", s: sock(1, quiet(10*time.Second, 10*time.Second), timer(inventory.TimerKeepalive, 0), expires(110*min))},
		{name: "keepalive failing", s: sock(1, quiet(10*min, 10*min), timer(inventory.TimerKeepalive, 2)), want: rs(ReasonKeepaliveFailing), remembered: true},
		{name: "one keepalive probe in flight, idle on defaults", s: sock(1, quiet(10*min, 10*min), timer(inventory.TimerKeepalive, 1)), want: rs(ReasonIdle), remembered: true},
		{name: "one keepalive probe in flight, not idle", s: sock(1, quiet(10*time.Second, 10*min), timer(inventory.TimerKeepalive, 1))},
		{name: "in flight, no timeout yet", s: sock(1, quiet(10*min, 10*min), timer(inventory.TimerRetransmit, 0))},
		{name: "one RTO", s: sock(1, timer(inventory.TimerRetransmit, 1), backoff(1)), remembered: true},
		{name: "two RTOs", s: sock(1, timer(inventory.TimerRetransmit, 2), backoff(2)), want: rs(ReasonRetransmitting), remembered: true},
		{name: "retransmits counted by tcp_info only", s: sock(1, timer(inventory.TimerRetransmit, 0), backoff(3)), want: rs(ReasonRetransmitting), remembered: true},
		{name: "backoff alone is not retransmitting", s: sock(1, timer(inventory.TimerRetransmit, 0), func(s *inventory.Socket) { s.Info.Backoff = 5 })},
		{name: "shrunk window: retransmit timer, snd_wnd 0, not yet stalled", s: sock(1, timer(inventory.TimerRetransmit, 0), shrunk), remembered: true},
		{name: "zero window, probes unanswered", s: sock(1, timer(inventory.TimerZeroWindow, 2)), want: rs(ReasonRetransmitting), remembered: true},
		{name: "retransmitting without tcp_info", s: sock(1, timer(inventory.TimerRetransmit, 4), infoLen(0)), want: rs(ReasonRetransmitting), remembered: true},
		{name: "zero window, not yet stalled", s: sock(1, timer(inventory.TimerZeroWindow, 1)), remembered: true},
		{name: "no tcp_info", s: sock(1, infoLen(0)), unav: rs(ReasonIdle)},
		{name: "tcp_info too short", s: sock(1, infoLen(inventory.MinInfoLen-1), quiet(10*min, 10*min)), unav: rs(ReasonIdle)},
		{name: "old kernel tcp_info (no bytes_acked) is enough for idle", s: sock(1, infoLen(inventory.MinInfoLen), quiet(10*min, 10*min)), want: rs(ReasonIdle), remembered: true},
		{name: "close_wait, last ACK long ago", s: sock(1, state(CW), lastAck(61*time.Second)), want: rs(ReasonCloseWait), remembered: true},
		{name: "close_wait, recent", s: sock(1, state(CW), lastAck(5*time.Second)), remembered: true},
		{name: "close_wait without tcp_info", s: sock(1, state(CW), infoLen(0)), remembered: true},
		{name: "close_wait is never idle", s: sock(1, state(CW), quiet(10*min, 10*min), lastAck(time.Second)), remembered: true},
		{name: "close_wait retransmitting", s: sock(1, state(CW), timer(inventory.TimerRetransmit, 5), lastAck(2*min)), want: rs(ReasonRetransmitting, ReasonCloseWait), remembered: true},
		{name: "fin_wait2 old", s: sock(1, state(inventory.StateFinWait2), lastAck(91*time.Second)), want: rs(ReasonFinWait2), remembered: true},
		{name: "fin_wait2 at tcp_fin_timeout", s: sock(1, state(inventory.StateFinWait2), lastAck(60*time.Second)), remembered: true},
		{name: "last_ack has no lower bound", s: sock(1, state(inventory.StateLastAck), lastAck(10*min)), remembered: true},
		{name: "time_wait", s: sock(1, state(inventory.StateTimeWait), infoLen(0), timer(inventory.TimerTimeWait, 0))},
		{name: "listen", s: sock(1, state(inventory.StateListen), quiet(10*min, 10*min))},
		{name: "syn_sent retransmitting SYN", s: sock(1, state(inventory.StateSynSent), timer(inventory.TimerRetransmit, 3))},
		{name: "fin_wait1", s: sock(1, state(inventory.StateFinWait1), timer(inventory.TimerRetransmit, 3))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(DefaultConfig())
			got, unav := tr.observe(t0, tt.s)
			if diff := cmp.Diff(tt.want.Strings(), got.Strings()); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.unav.Strings(), unav.Strings()); diff != "" {
				t.Errorf("unavailable (-want +got):\n%s", diff)
			}
			e, ok := tr.Get(tt.s.Key())
			if ok != tt.remembered || tr.Len() != map[bool]int{true: 1}[tt.remembered] {
				t.Fatalf("remembered = %v (Len %d), want %v", ok, tr.Len(), tt.remembered)
			}
			if ok && (e.Reasons != got || e.Unavailable != unav || e.LastSeen != t0 || e.FirstSeen != t0) {
				t.Errorf("entry %+v does not match the observation", e)
			}
			if ok && !got.Empty() && e.SuspectSince != t0 {
				t.Errorf("SuspectSince = %v, want %v", e.SuspectSince, t0)
			}
		})
	}
}

// step is one observation of socket 1 in a history test.
type step struct {
	at   time.Duration // since t0
	s    *inventory.Socket
	want Reasons
	kept bool
}

func runSteps(t *testing.T, cfg Config, steps []step) *Tracker {
	t.Helper()
	tr := New(cfg)
	for i, st := range steps {
		got := tr.Observe(t0.Add(st.at), st.s)
		if got != st.want {
			t.Errorf("step %d (t0+%v): reasons %q, want %q", i, st.at, got, st.want)
		}
		if _, ok := tr.Get(st.s.Key()); ok != st.kept {
			t.Errorf("step %d (t0+%v): remembered %v, want %v", i, st.at, ok, st.kept)
		}
		tr.EndNamespace(t0.Add(st.at), st.s.Netns)
	}
	return tr
}

func TestHistory(t *testing.T) {
	s := time.Second
	rtx := func(n uint8, a uint64) *inventory.Socket {
		return sock(1, timer(inventory.TimerRetransmit, n), backoff(n), acked(a))
	}
	zw := sock(1, timer(inventory.TimerZeroWindow, 1))
	zwShrunk := sock(1, timer(inventory.TimerRetransmit, 0), shrunk)
	cw := func(ack time.Duration) *inventory.Socket {
		return sock(1, state(inventory.StateCloseWait), lastAck(ack))
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"zero window becomes a stall after Stall, and is forgotten once the window opens", []step{
			{0, zw, 0, true},
			{30 * s, zw, 0, true},
			{60 * s, zw, rs(ReasonZeroWindow), true},
			{75 * s, sock(1), 0, false},
			{90 * s, zw, 0, true},
		}},
		{"both ways of probing a zero window age together; unanswered probes are retransmitting", []step{
			{0, zw, 0, true},
			{30 * s, zwShrunk, 0, true},
			{60 * s, zw, rs(ReasonZeroWindow), true},
			{61 * s, zwShrunk, rs(ReasonZeroWindow), true},
			{75 * s, sock(1, timer(inventory.TimerZeroWindow, 2)), rs(ReasonRetransmitting), true},
			{90 * s, sock(1, timer(inventory.TimerZeroWindow, 0)), rs(ReasonZeroWindow), true},
		}},
		{"ACK progress resets retransmitting", []step{
			{0, rtx(1, 1000), 0, true},
			{15 * s, rtx(3, 1000), rs(ReasonRetransmitting), true},
			{30 * s, rtx(2, 5000), 0, true},
			{45 * s, rtx(2, 5000), rs(ReasonRetransmitting), true},
			{60 * s, sock(1, acked(9000)), 0, false},
		}},
		{"without bytes_acked the count alone decides", []step{
			{0, sock(1, timer(inventory.TimerRetransmit, 1), backoff(1), infoLen(inventory.MinInfoLen)), 0, true},
			{15 * s, sock(1, timer(inventory.TimerRetransmit, 2), backoff(2), infoLen(inventory.MinInfoLen)), rs(ReasonRetransmitting), true},
		}},
		{"close_wait ages from the oldest possible FIN", []step{
			{0, cw(10 * s), 0, true},
			{49 * s, cw(59 * s), 0, true},
			{50 * s, cw(60 * s), rs(ReasonCloseWait), true},
			{51 * s, cw(61 * s), rs(ReasonCloseWait), true},
		}},
		{"close_wait after an idle ESTABLISHED: never older than our last look", []step{
			{0, sock(1, quiet(2*time.Minute, 2*time.Minute)), rs(ReasonIdle), true},
			{30 * s, cw(10 * time.Minute), 0, true},
			{60 * s, cw(10 * time.Minute), rs(ReasonCloseWait), true},
		}},
		{"last_ack ages from first sight", []step{
			{0, sock(1, state(inventory.StateLastAck)), 0, true},
			{29 * s, sock(1, state(inventory.StateLastAck)), 0, true},
			{30 * s, sock(1, state(inventory.StateLastAck)), rs(ReasonLastAck), true},
		}},
		{"idle needs no history and ends with data", []step{
			{0, sock(1, quiet(time.Minute, time.Minute)), rs(ReasonIdle), true},
			{15 * s, sock(1, quiet(75*s, 75*s)), rs(ReasonIdle), true},
			{30 * s, sock(1), 0, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, DefaultConfig(), tt.steps) })
	}
}

func TestEntryTimes(t *testing.T) {
	tr := New(DefaultConfig())
	k := inventory.Key{Netns: 4026531840, Cookie: 1}
	tr.Observe(t0, sock(1, timer(inventory.TimerRetransmit, 1), backoff(1), acked(10)))
	tr.Observe(t0.Add(15*time.Second), sock(1, timer(inventory.TimerRetransmit, 3), backoff(3), acked(10)))
	tr.Observe(t0.Add(30*time.Second), sock(1, timer(inventory.TimerRetransmit, 4), backoff(4), acked(10), lastAck(40*time.Second)))
	got, ok := tr.Get(k)
	if !ok {
		t.Fatal("not remembered")
	}
	want := Entry{
		FirstSeen: t0, LastSeen: t0.Add(30 * time.Second), LastProgress: t0,
		SuspectSince: t0.Add(15 * time.Second), StateSince: t0, TimerSince: t0,
		Reasons: rs(ReasonRetransmitting), Idle: 100 * time.Millisecond, IdleKnown: true,
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Entry{}, "Socket", "Kernel")); diff != "" {
		t.Errorf("entry (-want +got):\n%s", diff)
	}
	// Progress is recorded, and ends the suspicion.
	tr.Observe(t0.Add(45*time.Second), sock(1, timer(inventory.TimerRetransmit, 1), backoff(1), acked(20)))
	got, _ = tr.Get(k)
	if got.LastProgress != t0.Add(45*time.Second) || !got.SuspectSince.IsZero() || !got.Reasons.Empty() {
		t.Errorf("after progress: LastProgress %v SuspectSince %v Reasons %q", got.LastProgress, got.SuspectSince, got.Reasons)
	}
}

func TestMisses(t *testing.T) {
	const ns1, ns2 = 1, 2
	tr := New(DefaultConfig())
	a := sock(1, netns(ns1), state(inventory.StateCloseWait))
	b := sock(2, netns(ns1), state(inventory.StateCloseWait))
	c := sock(3, netns(ns2), state(inventory.StateCloseWait))
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 15 * time.Second) }
	misses := func(s *inventory.Socket) int {
		e, ok := tr.Get(s.Key())
		if !ok {
			return -1
		}
		return int(e.Misses)
	}
	for _, s := range []*inventory.Socket{a, b, c} {
		tr.Observe(at(0), s)
	}
	tr.EndNamespace(at(0), ns1)
	tr.EndNamespace(at(0), ns2)

	tr.Observe(at(1), a) // b skipped once: the dump is not a snapshot
	tr.EndNamespace(at(1), ns1)
	if got := []int{misses(a), misses(b), misses(c)}; !cmp.Equal(got, []int{0, 1, 0}) {
		t.Fatalf("misses after one skip = %v, want [0 1 0]", got)
	}
	tr.Observe(at(2), a)
	tr.Observe(at(2), b) // back: its count restarts
	tr.EndNamespace(at(2), ns1)
	tr.Observe(at(3), a)
	tr.EndNamespace(at(3), ns1)
	tr.Observe(at(4), a)
	tr.EndNamespace(at(4), ns1) // b missed twice in a row: gone
	if got := []int{misses(a), misses(b), misses(c)}; !cmp.Equal(got, []int{0, -1, 0}) {
		t.Fatalf("misses = %v, want [0 -1 0] (c's namespace was not dumped)", got)
	}
	if tr.Len() != 2 {
		t.Errorf("Len = %d, want 2", tr.Len())
	}
	tr.EndNamespace(at(5), 999) // unknown namespace: nothing happens
	tr.DropNamespace(ns1)
	if got := []int{misses(a), misses(c)}; !cmp.Equal(got, []int{-1, 0}) || tr.Len() != 1 {
		t.Fatalf("after DropNamespace(ns1): misses %v Len %d, want [-1 0] and 1", got, tr.Len())
	}
	tr.Observe(at(6), a) // the cache of the last namespace must not resurrect the dropped map
	if tr.Len() != 2 || misses(a) != 0 {
		t.Errorf("after re-observing: Len %d misses %d", tr.Len(), misses(a))
	}
}

func TestSuspectsSorted(t *testing.T) {
	tr := New(DefaultConfig())
	idle := quiet(time.Hour, time.Hour)
	for _, s := range []*inventory.Socket{
		sock(9, netns(2), idle), sock(5, netns(1), idle), sock(7, netns(2), idle),
		sock(3, netns(1)), // healthy: not a suspect
		sock(4, netns(1), state(inventory.StateCloseWait), lastAck(time.Second)), // remembered, no reason yet
	} {
		tr.Observe(t0, s)
	}
	var got []inventory.Key
	for _, e := range tr.suspects() {
		got = append(got, e.Socket.Key())
	}
	want := []inventory.Key{{Netns: 1, Cookie: 5}, {Netns: 2, Cookie: 7}, {Netns: 2, Cookie: 9}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("suspects (-want +got):\n%s", diff)
	}
	if tr.Len() != 4 {
		t.Errorf("Len = %d, want 4", tr.Len())
	}
	// eachEntry visits the same entries (in any order); Reasons reads one.
	var each []inventory.Key
	tr.eachEntry(func(e *Entry) { each = append(each, e.Socket.Key()) })
	slices.SortFunc(each, func(a, b inventory.Key) int { return stdcmp.Compare(a.Cookie, b.Cookie) })
	if diff := cmp.Diff([]inventory.Key{{Netns: 1, Cookie: 5}, {Netns: 2, Cookie: 7}, {Netns: 2, Cookie: 9}}, each); diff != "" {
		t.Errorf("eachEntry (-want +got):\n%s", diff)
	}
	if r, ok := tr.Reasons(inventory.Key{Netns: 2, Cookie: 9}); !ok || r != rs(ReasonIdle) {
		t.Errorf("Reasons(2/9) = %v, %v", r, ok)
	}
	if r, ok := tr.Reasons(inventory.Key{Netns: 1, Cookie: 4}); !ok || !r.Empty() {
		t.Errorf("Reasons(1/4) = %v, %v; want remembered, no reason", r, ok)
	}
	if _, ok := tr.Reasons(inventory.Key{Netns: 1, Cookie: 3}); ok {
		t.Error("Reasons found a healthy socket the tracker does not keep")
	}
}

func TestConfig(t *testing.T) {
	tr := New(Config{Idle: 2 * time.Second})
	want := DefaultConfig()
	want.Idle = 2 * time.Second
	want.Horizon = 2 * time.Second // a zero Horizon is Idle
	if diff := cmp.Diff(want, tr.Config()); diff != "" {
		t.Errorf("zero fields take defaults (-want +got):\n%s", diff)
	}
	if got := tr.Observe(t0, sock(1, quiet(3*time.Second, 3*time.Second))); got != rs(ReasonIdle) {
		t.Errorf("with Idle 2s: %q", got)
	}
	tr.SetConfig(Config{})
	if got := tr.Observe(t0, sock(1, quiet(3*time.Second, 3*time.Second))); !got.Empty() {
		t.Errorf("after SetConfig(defaults): %q", got)
	}
}

// TestEachSuspectBrief: the brief pass lists the same suspects as
// eachEntry, with the same identity, reasons, family, inode and idle time.
func TestEachSuspectBrief(t *testing.T) {
	tr := New(Config{Idle: time.Minute})
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := range 50 {
		s := inventory.Socket{
			Netns: uint64(1 + i%3), Family: inventory.FamilyInet6, State: inventory.StateEstablished,
			Cookie: uint64(100 + i), Inode: uint32(1000 + i),
			Local:  netip.MustParseAddrPort("[2001:db8::1]:5432"),
			Remote: netip.AddrPortFrom(netip.MustParseAddr("2001:db8::2"), uint16(40000+i)),
		}
		s.Info.Len = 280
		idle := time.Duration(i) * 5 * time.Second // only the ones idle for a minute are suspects
		s.Info.LastDataRecv, s.Info.LastDataSent = uint32(idle.Milliseconds()), uint32(idle.Milliseconds())
		s.Info.LastAckRecv = uint32(i) * 1000
		tr.Observe(now, &s)
	}
	want := map[inventory.Key]Brief{}
	tr.eachEntry(func(e *Entry) {
		want[e.Socket.Key()] = Brief{
			Key: e.Socket.Key(), Reasons: e.Reasons, Family: e.Socket.Family, Inode: e.Socket.Inode,
			LastDataRecv: e.Socket.Info.LastDataRecv, InfoValid: e.Socket.Info.Valid(),
			SuspectSince: e.SuspectSince, Misses: e.Misses,
			LastAck: now.Add(-time.Duration(e.Socket.Info.LastAckRecv) * time.Millisecond),
		}
		if e.LastAck() != want[e.Socket.Key()].LastAck {
			t.Errorf("cookie %d: Entry.LastAck %v", e.Socket.Cookie, e.LastAck())
		}
	})
	got := map[inventory.Key]Brief{}
	tr.EachSuspectBrief(func(b *Brief) { got[b.Key] = *b })
	if len(want) != 38 {
		t.Fatalf("%d suspects, want 38 (idle 60 s to 245 s)", len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("briefs (-eachEntry +EachSuspectBrief):\n%s", diff)
	}
}

// TestObserveOutOfOrder: the scan path's position hint is only a hint: a
// dump in another order, with sockets added and removed, finds every
// remembered socket and no other.
func TestObserveOutOfOrder(t *testing.T) {
	tr := New(Config{Idle: time.Minute})
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	sock := func(cookie uint64, idle time.Duration) inventory.Socket {
		s := inventory.Socket{
			Netns: 1, Family: inventory.FamilyInet, State: inventory.StateEstablished, Cookie: cookie,
			Local:  netip.MustParseAddrPort("192.0.2.1:5432"),
			Remote: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(cookie)),
		}
		s.Info.Len = 280
		s.Info.LastDataRecv, s.Info.LastDataSent = uint32(idle.Milliseconds()), uint32(idle.Milliseconds())
		return s
	}
	orders := [][]uint64{
		{1, 2, 3, 4, 5, 6},
		{6, 5, 4, 3, 2, 1},
		{2, 4, 6, 7, 1, 3}, // 5 gone, 7 new
		{7, 3, 1, 6, 4, 2},
	}
	for round, order := range orders {
		for _, c := range order {
			idle := 2 * time.Minute
			if c == 4 && round >= 2 {
				idle = time.Second // 4 moved data: no longer a suspect
			}
			s := sock(c, idle)
			tr.Observe(now, &s)
		}
		tr.EndNamespace(now, 1)
		now = now.Add(15 * time.Second)
	}
	var got []uint64
	for _, e := range tr.suspects() {
		got = append(got, e.Socket.Cookie)
	}
	// 5 was missed by two complete dumps (forgotten); 4 is healthy again
	// (forgotten).
	if diff := cmp.Diff([]uint64{1, 2, 3, 6, 7}, got); diff != "" {
		t.Errorf("suspects (-want +got):\n%s", diff)
	}
	for _, c := range []uint64{1, 2, 3, 6, 7} {
		if e, ok := tr.Get(inventory.Key{Netns: 1, Cookie: c}); !ok || e.Socket.Remote.Port() != uint16(c) {
			t.Errorf("cookie %d: %+v, %v", c, e.Socket, ok)
		}
	}
	if _, ok := tr.Get(inventory.Key{Netns: 1, Cookie: 5}); ok || tr.Len() != 5 {
		t.Errorf("5 still remembered, or %d remembered; want 5 gone and 5 left", tr.Len())
	}
}
