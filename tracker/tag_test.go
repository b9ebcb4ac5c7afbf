package tracker

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ghostd/ghostd/inventory"
)

// Tests of what the tracker keeps for its user: tags, suspect counts, the cap.

// TestTag: a tag sticks to a remembered socket while it is a probeable
// suspect, is cleared when it stops being one, goes with the entry, and
// cannot be set on a socket the tracker does not hold.
func TestTag(t *testing.T) {
	tr := New(Config{Idle: time.Minute, CloseWait: time.Minute})
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s := inventory.Socket{
		Netns: 1, Family: inventory.FamilyInet, State: inventory.StateEstablished, Cookie: 9,
		Local:  netip.MustParseAddrPort("192.0.2.1:5432"),
		Remote: netip.MustParseAddrPort("192.0.2.2:40000"),
	}
	s.Info.Len = 280
	s.Info.LastDataRecv, s.Info.LastDataSent = 120_000, 120_000
	k := s.Key()
	if tr.SetTag(k, Tag{1}) {
		t.Error("tagged a socket the tracker does not hold")
	}
	tr.Observe(now, &s)
	if !tr.SetTag(k, Tag{7, 7}) {
		t.Fatal("could not tag an idle suspect")
	}
	now = now.Add(15 * time.Second)
	s.Info.LastDataRecv, s.Info.LastDataSent = 135_000, 135_000
	tr.Observe(now, &s)
	if tag, ok := tr.Tag(k); !ok || tag != (Tag{7, 7}) {
		t.Errorf("tag after another idle observation: %v %v", tag, ok)
	}
	var brief Tag
	tr.EachSuspectBrief(func(b *Brief) { brief = b.Tag })
	if e, _ := tr.Get(k); e.Tag != (Tag{7, 7}) || brief != (Tag{7, 7}) {
		t.Errorf("Entry.Tag %v, Brief.Tag %v", e.Tag, brief)
	}
	// The peer closed: CLOSE_WAIT is remembered but not probeable.
	s.State = inventory.StateCloseWait
	tr.Observe(now.Add(15*time.Second), &s)
	if tag, ok := tr.Tag(k); !ok || tag != (Tag{}) {
		t.Errorf("tag of a CLOSE_WAIT socket: %v %v, want cleared", tag, ok)
	}
	tr.SetTag(k, Tag{3})
	tr.DropNamespace(1)
	if _, ok := tr.Tag(k); ok {
		t.Error("tag outlived its namespace")
	}
}

func TestNewSuspects(t *testing.T) {
	tr := New(Config{Idle: time.Minute})
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s := inventory.Socket{Netns: 1, Family: inventory.FamilyInet, State: inventory.StateEstablished, Cookie: 4}
	s.Info.Len = 280
	step := func(idle time.Duration, want uint64) {
		t.Helper()
		s.Info.LastDataRecv, s.Info.LastDataSent = uint32(idle.Milliseconds()), uint32(idle.Milliseconds())
		tr.Observe(now, &s)
		now = now.Add(15 * time.Second)
		if got := tr.NewSuspects(); got != want {
			t.Errorf("idle %v: NewSuspects %d, want %d", idle, got, want)
		}
	}
	step(2*time.Minute, 1)
	step(2*time.Minute+15*time.Second, 1) // still the same suspect
	step(time.Second, 1)                  // moved data: forgotten
	step(2*time.Minute, 2)                // a suspect again
}

// TestProgressClearsTag: a verdict is about a connection that moved no data.
// A suspect that stays one (here keepalive_failing) but moved bytes since the
// last scan loses its tag, so a ghost verdict can never outlive evidence of
// life.
func TestProgressClearsTag(t *testing.T) {
	tr := New(Config{Idle: time.Minute})
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s := inventory.Socket{
		Netns: 1, Family: inventory.FamilyInet, State: inventory.StateEstablished, Cookie: 9,
		Timer: inventory.TimerKeepalive, Retrans: KeepaliveUnanswered,
		Local:  netip.MustParseAddrPort("192.0.2.1:5432"),
		Remote: netip.MustParseAddrPort("192.0.2.2:40000"),
	}
	s.Info.Len = 280
	s.Info.SetOptional(1000, 2000, 0, 0)
	k := s.Key()
	if rs := tr.Observe(now, &s); !rs.Has(ReasonKeepaliveFailing) {
		t.Fatalf("reasons %v, want keepalive_failing", rs)
	}
	tr.SetTag(k, Tag{5})
	now = now.Add(15 * time.Second)
	tr.Observe(now, &s) // no bytes moved: the tag stays
	if tag, _ := tr.Tag(k); tag != (Tag{5}) {
		t.Fatalf("tag without progress: %v, want kept", tag)
	}
	s.Info.SetOptional(1000, 2001, 0, 0) // one byte received
	now = now.Add(15 * time.Second)
	if rs := tr.Observe(now, &s); !rs.Has(ReasonKeepaliveFailing) {
		t.Fatalf("reasons %v, want still keepalive_failing", rs)
	}
	if tag, ok := tr.Tag(k); !ok || tag != (Tag{}) {
		t.Errorf("tag after bytes moved: %v %v, want cleared", tag, ok)
	}
}

// TestMaxEntriesFairShare: past MaxEntries a busy namespace cannot add more,
// while another namespace still gets its fair share; refusals are counted.
func TestMaxEntriesFairShare(t *testing.T) {
	tr := New(Config{Idle: time.Minute, MaxEntries: 10})
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	idle := func(netns, cookie uint64) *inventory.Socket {
		s := &inventory.Socket{Netns: netns, Family: inventory.FamilyInet, State: inventory.StateEstablished, Cookie: cookie}
		s.Info.Len = 280
		s.Info.LastDataRecv, s.Info.LastDataSent = 120_000, 120_000
		return s
	}
	for c := range uint64(15) {
		tr.Observe(now, idle(1, c+1))
	}
	if tr.Len() != 10 || tr.Refused() != 5 {
		t.Fatalf("busy namespace alone: %d remembered, %d refused; want 10 and 5", tr.Len(), tr.Refused())
	}
	for c := range uint64(8) {
		tr.Observe(now, idle(2, c+1))
	}
	in2 := 0
	tr.EachSuspectBrief(func(b *Brief) {
		if b.Key.Netns == 2 {
			in2++
		}
	})
	if in2 != 5 || tr.Refused() != 8 {
		t.Errorf("second namespace: %d remembered (want its share, 10/2 = 5), %d refused (want 8)", in2, tr.Refused())
	}
	// Remembered sockets are observed again without counting as refused.
	tr.Observe(now.Add(15*time.Second), idle(1, 1))
	if tr.Refused() != 8 {
		t.Errorf("re-observing a remembered socket counted as refused: %d", tr.Refused())
	}
}
