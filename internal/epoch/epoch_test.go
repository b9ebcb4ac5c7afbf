package epoch

import (
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	base := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	e := New(base)
	for _, d := range []time.Duration{0, 1, -1, time.Hour, -24 * time.Hour, 100 * 365 * 24 * time.Hour} {
		x := base.Add(d)
		if got := e.Time(e.Stamp(x)); !got.Equal(x) || got != x {
			t.Errorf("%v: came back as %v", x, got)
		}
	}
	if s := e.Stamp(time.Time{}); s != Zero || !e.Time(s).IsZero() {
		t.Errorf("the zero time stamped %d, back as %v", s, e.Time(s))
	}
	// A wall clock reading with a monotonic one comes back Equal.
	now := time.Now()
	w := New(now)
	later := now.Add(1500 * time.Millisecond)
	if got := w.Time(w.Stamp(later)); !got.Equal(later) {
		t.Errorf("monotonic: %v came back as %v", later, got)
	}
	// Far from the epoch: clamped, never Zero.
	if s := e.Stamp(time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC)); s == Zero {
		t.Error("a time 2000 years before the epoch stamped as the zero time")
	}
}
