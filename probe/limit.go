package probe

import (
	"context"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateLimit turns Config.Rate into a limiter setting; +Inf lifts the cap.
func rateLimit(r float64) rate.Limit {
	if math.IsInf(r, 1) {
		return rate.Inf
	}
	return rate.Limit(r)
}

// jitter spreads d by ±20 %, never below MinInterval.
func jitter(d time.Duration) time.Duration {
	j := time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return max(j, MinInterval)
}

// hostLimiter caps concurrent probes per peer host. A host's slot exists
// only while someone holds or waits for it, so the map stays as small as
// the set of hosts being probed.
type hostLimiter struct {
	mu    sync.Mutex
	hosts map[netip.Addr]*hostSlot
}

type hostSlot struct {
	sem  chan struct{} // capacity fixed when the slot was created
	refs int           // holders and waiters
}

// acquire waits for one of capacity slots for host; call release when done.
func (h *hostLimiter) acquire(ctx context.Context, host netip.Addr, capacity int) (release func(), err error) {
	h.mu.Lock()
	if h.hosts == nil {
		h.hosts = make(map[netip.Addr]*hostSlot)
	}
	s, ok := h.hosts[host]
	if !ok {
		s = &hostSlot{sem: make(chan struct{}, max(capacity, 1))}
		h.hosts[host] = s
	}
	s.refs++
	h.mu.Unlock()
	drop := func() {
		h.mu.Lock()
		if s.refs--; s.refs == 0 {
			delete(h.hosts, host)
		}
		h.mu.Unlock()
	}
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}

// size returns how many hosts have a slot.
func (h *hostLimiter) size() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.hosts)
}
