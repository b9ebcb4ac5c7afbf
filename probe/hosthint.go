package probe

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// This file decides what the host hint may claim. The hint pings a silent
// peer's address to tell "host gone" from "flow lost". That address is the
// peer's host only when nothing translates it: when the connection is NATed
// in its own namespace (a Service VIP, a REDIRECT, SNAT) the echo does not
// test the peer, and when the address stands for many connections on many
// ports (a NAT gateway clients come through, a load balancer's VIP) it is
// the NAT that answers, always. The hint then says so instead of claiming
// the host is reachable.

// Host hints (Result.HostHint).
const (
	HostHintReachable   = "reachable"   // the peer's address answered an echo
	HostHintUnreachable = "unreachable" // it did not
	HostHintNAT         = "nat"         // the connection is NATed in its namespace: the address is not the peer's host
	HostHintShared      = "shared"      // the address answered, but it fronts many connections (a NAT or VIP): no claim about the peer
)

// SharedPorts is how many distinct remote ports of probed connections make
// an address shared (a NAT or VIP), within sharedWindow. A client host with
// that big a pool reads shared too: the hint then claims nothing, the safe
// side.
const SharedPorts = 8

const (
	sharedWindow   = 10 * time.Minute
	maxHintAddrs   = 4096
	maxPortsPerKey = SharedPorts
)

// hintMemory remembers, per remote address, the distinct remote ports of
// connections probed recently (bounded: maxHintAddrs addresses, the one
// seen longest ago dropped first, and SharedPorts ports each).
type hintMemory struct {
	mu    sync.Mutex
	addrs map[netip.Addr]*hintAddr
}

type hintAddr struct {
	ports []uint16
	since time.Time // when the port list was started
	seen  time.Time
}

// observe records a probed connection's remote address and port.
func (h *hintMemory) observe(remote netip.AddrPort, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.addrs == nil {
		h.addrs = make(map[netip.Addr]*hintAddr)
	}
	a := remote.Addr().Unmap()
	e := h.addrs[a]
	if e == nil {
		if len(h.addrs) >= maxHintAddrs {
			var oldest netip.Addr
			var at time.Time
			for k, v := range h.addrs {
				if at.IsZero() || v.seen.Before(at) {
					oldest, at = k, v.seen
				}
			}
			delete(h.addrs, oldest)
		}
		e = &hintAddr{since: now}
		h.addrs[a] = e
	}
	if now.Sub(e.since) > sharedWindow {
		e.ports, e.since = e.ports[:0], now
	}
	e.seen = now
	for _, p := range e.ports {
		if p == remote.Port() {
			return
		}
	}
	if len(e.ports) < maxPortsPerKey {
		e.ports = append(e.ports, remote.Port())
	}
}

// shared reports whether the address fronts SharedPorts distinct remote ports.
func (h *hintMemory) shared(remote netip.Addr, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.addrs[remote.Unmap()]
	return e != nil && now.Sub(e.since) <= sharedWindow && len(e.ports) >= SharedPorts
}

// hostHint decides the hint from what is known: nat is the connection's NAT
// kind, shared whether its address is shared, up and err the echo's
// outcome. reachable is nil when the hint claims nothing about the host.
func hostHint(nat string, shared, up bool, err error) (hint string, reachable *bool) {
	switch {
	case nat != "":
		return HostHintNAT, nil
	case err != nil:
		return "", nil
	case !up:
		return HostHintUnreachable, &up
	case shared:
		return HostHintShared, nil
	}
	return HostHintReachable, &up
}

// hint fills res's host hint for a silent probe of t: an echo to the peer's
// address unless the connection is NATed in its namespace.
func (p *Prober) hint(ctx context.Context, cfg *Config, d *demux, t Target, res *Result, rt route) {
	local, remote := t.Local.Addr().Unmap(), t.Remote.Addr().Unmap()
	if res.NAT != "" {
		res.HostHint, res.HostReachable = hostHint(res.NAT, false, false, nil)
		return
	}
	up, err := p.echo(ctx, cfg, d, local, remote, rt)
	if err != nil {
		p.log.Debug("probe: host hint", "remote", remote, "err", err)
	}
	res.HostHint, res.HostReachable = hostHint("", p.hints.shared(remote, cfg.Now()), up, err)
}
