package positive

import (
	"math"
	"testing"
	"time"
)

func TestOr(t *testing.T) {
	if got := Or(3*time.Second, time.Minute); got != 3*time.Second {
		t.Errorf("set duration: got %s, want 3s", got)
	}
	for _, v := range []time.Duration{0, -time.Nanosecond} {
		if got := Or(v, time.Minute); got != time.Minute {
			t.Errorf("duration %s: got %s, want the default 1m", v, got)
		}
	}
	if got := Or(uint8(0), 2); got != 2 {
		t.Errorf("uint8 zero: got %d, want the default 2", got)
	}
	for _, c := range []struct{ v, want float64 }{
		{0.5, 0.5}, {math.Inf(1), math.Inf(1)}, {0, 200}, {-1, 200}, {math.NaN(), 200}, {math.Inf(-1), 200},
	} {
		if got := Or(c.v, 200); got != c.want {
			t.Errorf("float %v: got %v, want %v", c.v, got, c.want)
		}
	}
}
