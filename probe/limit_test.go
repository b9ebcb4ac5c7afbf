package probe

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestHostLimiter(t *testing.T) {
	var h hostLimiter
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	var active [2]atomic.Int32
	var peak [2]atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			host, k := a, 0
			if i%2 == 1 {
				host, k = b, 1
			}
			release, err := h.acquire(context.Background(), host, 3)
			if err != nil {
				t.Error(err)
				return
			}
			n := active[k].Add(1)
			for {
				p := peak[k].Load()
				if n <= p || peak[k].CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			active[k].Add(-1)
			release()
		})
	}
	wg.Wait()
	for k := range peak {
		if p := peak[k].Load(); p > 3 || p < 1 {
			t.Errorf("host %d: peak concurrency %d, cap 3", k, p)
		}
	}
	if n := h.size(); n != 0 {
		t.Errorf("%d host slots left after every release", n)
	}
}

func TestHostLimiterCancel(t *testing.T) {
	var h hostLimiter
	host := netip.MustParseAddr("192.0.2.1")
	release, err := h.acquire(context.Background(), host, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.acquire(ctx, host, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting past the deadline: %v", err)
	}
	release()
	if n := h.size(); n != 0 {
		t.Errorf("%d host slots left", n)
	}
}

func TestRateLimit(t *testing.T) {
	if rateLimit(math.Inf(1)) != rate.Inf || rateLimit(50) != 50 {
		t.Error("rateLimit")
	}
}
