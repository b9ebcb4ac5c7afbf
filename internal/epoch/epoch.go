package epoch

import (
	"math"
	"time"
)

// Stamp is a time as nanoseconds since an Epoch: 8 bytes without a
// pointer, where a time.Time is 24 with one (the garbage collector scans
// every table of them).
type Stamp int64

// Zero is the Stamp of the zero time.Time.
const Zero = Stamp(math.MinInt64)

// Epoch is the time Stamps count from. Times are stamped relative to it and
// come back in its location, with a monotonic clock reading if both it and
// the stamped time had one; exactly as given when neither has one (a test
// clock), else Equal to it (a wall clock reading comes back as the epoch's
// plus the monotonic time elapsed). Times more than 292 years from the
// epoch are clamped.
type Epoch struct{ at time.Time }

// New returns the epoch at t.
func New(t time.Time) Epoch { return Epoch{at: t} }

// At returns the epoch's own time.
func (e Epoch) At() time.Time { return e.at }

// Stamp returns t as a Stamp; the zero time is Zero.
func (e Epoch) Stamp(t time.Time) Stamp {
	if t.IsZero() {
		return Zero
	}
	return Stamp(max(int64(t.Sub(e.at)), int64(Zero)+1))
}

// Time is the inverse of Stamp.
func (e Epoch) Time(s Stamp) time.Time {
	if s == Zero {
		return time.Time{}
	}
	return e.at.Add(time.Duration(s))
}
