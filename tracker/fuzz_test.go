package tracker

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/ghostd/ghostd/inventory"
)

// FuzzTracker drives a tracker with an arbitrary sequence of observations,
// namespace ends and drops over a small key space, and checks invariants:
// nothing panics, Len matches what Get finds, reasons fit the socket's state
// and timer, a reason needing an absent field is never produced, and
// suspects() is sorted and complete.
func FuzzTracker(f *testing.F) {
	f.Add([]byte{0, 1, 1, 1, 0, 0, 0, 0xff, 0xff, 0xff, 1, 0})
	f.Add([]byte{0, 1, 1, 8, 0, 0, 0, 0x10, 0x20, 0xff, 1, 30, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 2, 3, 1, 1, 3, 3, 0, 0, 0, 5, 15, 0, 2, 3, 1, 1, 4, 4, 0, 0, 0, 5, 15, 0, 2, 3, 1, 1, 2, 2, 0, 0, 0, 9, 15})
	f.Add([]byte{0, 1, 1, 1, 4, 2, 0, 0, 0, 0, 0, 60, 0, 1, 1, 1, 4, 2, 0, 0, 0, 0, 0, 60, 2, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := New(Config{Idle: 10 * time.Second, CloseWait: 20 * time.Second, Stall: 30 * time.Second,
			FinWait2: 40 * time.Second, LastAck: 50 * time.Second, Horizon: 25 * time.Second})
		tr.SetSysctls(1, inventory.TCPSysctls{KeepaliveTime: 5 * time.Second, KeepaliveIntvl: 2 * time.Second, KeepaliveProbes: 3})
		tr.SetKeepalive(inventory.Key{Netns: 2, Cookie: 3}, KeepaliveSettings{Time: time.Second, Intvl: time.Second, Probes: 2})
		now := t0
		var acked [4][8]uint64
		for len(data) > 0 {
			op := data[0] % 3
			switch {
			case op == 0 && len(data) >= 12:
				b := data[1:12]
				data = data[12:]
				ns, cookie := uint64(b[0]%4), uint64(b[1]%8)
				s := &inventory.Socket{Netns: ns, Cookie: cookie, State: inventory.State(b[2] % 13),
					Timer: inventory.Timer(b[3] % 6), Retrans: b[4] % 8}
				s.Info.Len = []uint16{0, 50, inventory.MinInfoLen, 127, 136, 280}[b[5]%6]
				s.Info.Backoff, s.Info.Retransmits = b[5]>>4, b[5]>>5
				s.Info.LastDataRecv = uint32(b[6]) * 1000
				s.Info.LastDataSent = uint32(b[7]) * 1000
				s.Info.LastAckRecv = uint32(b[8]) * 1000
				s.Expires = uint32(b[7]) * 7000
				s.Info.RTO = uint32(b[6]) * 10_000
				acked[ns][cookie] += uint64(b[9] % 2)
				s.Info.SetOptional(acked[ns][cookie], 0, uint32(b[9]>>1), 0)
				now = now.Add(time.Duration(b[10]) * time.Second)
				got, unav := tr.observe(now, s)
				checkReasons(t, s, got, unav)
				if e, ok := tr.Get(s.Key()); ok {
					if e.Reasons != got || e.Unavailable != unav || e.LastSeen != now || e.Misses != 0 {
						t.Fatalf("entry %+v does not match the observation %q/%q at %v", e, got, unav, now)
					}
					if d := e.Kernel.Deadline; d.In < 0 || (d.Never && d.In != 0) || d.Basis == "" {
						t.Fatalf("kernel deadline %+v", d)
					}
					if e.FirstSeen.After(e.LastSeen) || e.StateSince.After(now) || e.TimerSince.After(now) ||
						(!got.Empty() && (e.SuspectSince.IsZero() || e.SuspectSince.After(now))) {
						t.Fatalf("times out of order: %+v", e)
					}
				} else if !got.Empty() {
					t.Fatalf("a suspect (%q) was not remembered", got)
				}
			case op == 1 && len(data) >= 2:
				tr.EndNamespace(now, uint64(data[1]%4))
				data = data[2:]
			case op == 2 && len(data) >= 2:
				tr.DropNamespace(uint64(data[1] % 4))
				data = data[2:]
			default:
				data = nil
			}
			n, suspects := 0, 0
			for ns := range uint64(4) {
				for c := range uint64(8) {
					if e, ok := tr.Get(inventory.Key{Netns: ns, Cookie: c}); ok {
						n++
						if !e.Reasons.Empty() {
							suspects++
						}
					}
				}
			}
			sus := tr.suspects()
			if n != tr.Len() || suspects != len(sus) {
				t.Fatalf("Len %d, Get finds %d; %d suspects, suspects() has %d", tr.Len(), n, suspects, len(sus))
			}
			if !slices.IsSortedFunc(sus, func(a, b Entry) int {
				if a.Socket.Netns != b.Socket.Netns {
					return cmp.Compare(a.Socket.Netns, b.Socket.Netns)
				}
				return cmp.Compare(a.Socket.Cookie, b.Socket.Cookie)
			}) {
				t.Fatal("suspects() is not sorted")
			}
		}
	})
}

// checkReasons checks that each reason fits the socket it was given for.
func checkReasons(t *testing.T, s *inventory.Socket, got, unav Reasons) {
	t.Helper()
	if got&unav != 0 {
		t.Fatalf("%q both produced and unavailable", got&unav)
	}
	synced := s.State == inventory.StateEstablished || s.State == inventory.StateCloseWait
	for _, c := range []struct {
		r  Reason
		ok bool
	}{
		{ReasonIdle, s.State == inventory.StateEstablished && s.Info.Valid() &&
			(s.Timer == inventory.TimerNone || s.Timer == inventory.TimerDelayedAck ||
				(s.Timer == inventory.TimerKeepalive && s.Retrans < KeepaliveUnanswered))},
		{ReasonRetransmitting, synced && (s.Timer == inventory.TimerRetransmit || s.Timer == inventory.TimerZeroWindow)},
		{ReasonKeepaliveFailing, synced && s.Timer == inventory.TimerKeepalive && s.Retrans >= KeepaliveUnanswered},
		{ReasonZeroWindow, synced && zeroWindow(s)},
		{ReasonCloseWait, s.State == inventory.StateCloseWait},
		{ReasonFinWait2, s.State == inventory.StateFinWait2},
		{ReasonLastAck, s.State == inventory.StateLastAck},
	} {
		if got.Has(c.r) && !c.ok {
			t.Fatalf("%s produced for state %v timer %d retrans %d info len %d", c.r, s.State, s.Timer, s.Retrans, s.Info.Len)
		}
	}
	if got.Has(ReasonZeroWindow) && got.Has(ReasonRetransmitting) {
		t.Fatal("zero_window and retransmitting together")
	}
	if unav.Has(ReasonIdle) && s.Info.Valid() {
		t.Fatal("idle unavailable although tcp_info is valid")
	}
}
