package kernelhz

import "testing"

func TestFromTick(t *testing.T) {
	for _, hz := range []int64{24, 48, 100, 128, 250, 256, 300, 1000, 1024} {
		got, err := FromTick(0, 1_000_000/hz)
		if err != nil || got != int(hz) {
			t.Errorf("HZ %d: got %d, %v", hz, got, err)
		}
	}
	for _, bad := range [][2]int64{{0, 0}, {1, 0}, {0, -4}, {0, 3}, {0, 200_000}, {0, 3334}} {
		if got, err := FromTick(bad[0], bad[1]); err == nil || got != 0 {
			t.Errorf("%ds %dµs accepted as HZ %d (%v)", bad[0], bad[1], got, err)
		}
	}
}
