package probe

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"syscall"
)

// NAT inside the probed namespace.
//
// The capture sees a received frame before netfilter undoes NAT, so a
// connection translated in its own namespace (DNAT in OUTPUT to a Service
// VIP, SNAT or masquerade on the way out, REDIRECT to a local proxy) is
// answered on a tuple that is not the socket's own. Before a round, the
// connection's conntrack entry is looked up in its namespace; when its other
// direction is not the socket's tuple reversed, the probe watches that tuple
// as well as the socket's own (the answer of a peer in the same namespace,
// a REDIRECT proxy, is translated back on its way out, before the capture
// sees it). Nothing else is watched. The probe itself needs nothing: it
// leaves through LOCAL_OUT, where conntrack finds the same entry and
// translates it like the socket's own segments.

// NAT kinds in Result.NAT, joined with "+" when both ends are translated
// ("dnat+snat").
const (
	NATDNAT     = "dnat"     // the peer answers from another address or port (a Service VIP's backend)
	NATRedirect = "redirect" // the peer is a local proxy: the answer comes from loopback
	NATSNAT     = "snat"     // the socket's own address or port is rewritten on the wire
)

// errNoConntrack means conntrack is not loaded on this host: nothing can be
// translated, and nothing is looked up.
var errNoConntrack = errors.New("probe: conntrack not loaded")

// ctTuple is one direction of a conntrack entry: segments go from src to dst.
type ctTuple struct{ src, dst netip.AddrPort }

// natFlow is how a translated connection's answers look on the capture.
// The zero value means "not translated": watch the socket's own tuple.
type natFlow struct {
	key  flowKey // local = where answers go, remote = where they come from
	kind string  // NAT* kinds, "+"-joined
}

// translated reports whether the connection's answers carry another tuple.
func (n natFlow) translated() bool { return n.kind != "" }

// natFromEntry works out how the answers to a socket sending on k look, from
// its conntrack entry's two directions. The socket's own segments match one
// direction (orig for a connection it opened, reply for one NATed towards
// it); answers travel the other. ok is false when the entry is not the
// socket's or nothing is translated.
func natFromEntry(k flowKey, orig, reply ctTuple) (n natFlow, ok bool) {
	orig, reply = orig.unmapped(), reply.unmapped()
	sends := ctTuple{src: k.local, dst: k.remote}
	var answer ctTuple
	switch sends {
	case orig:
		answer = reply
	case reply:
		answer = orig
	default:
		return natFlow{}, false
	}
	if !answer.src.IsValid() || !answer.dst.IsValid() || answer.src.Addr().Is4() != k.remote.Addr().Is4() {
		return natFlow{}, false
	}
	var kinds []string
	if answer.src != k.remote {
		if answer.src.Addr().IsLoopback() {
			kinds = append(kinds, NATRedirect)
		} else {
			kinds = append(kinds, NATDNAT)
		}
	}
	if answer.dst != k.local {
		kinds = append(kinds, NATSNAT)
	}
	if len(kinds) == 0 {
		return natFlow{}, false
	}
	return natFlow{
		key:  newFlowKey(answer.dst, answer.src),
		kind: strings.Join(kinds, "+"),
	}, true
}

func (t ctTuple) unmapped() ctTuple {
	return ctTuple{
		src: netip.AddrPortFrom(t.src.Addr().Unmap(), t.src.Port()),
		dst: netip.AddrPortFrom(t.dst.Addr().Unmap(), t.dst.Port()),
	}
}

// natLogOnce says once per kind of failure why NAT lookups are skipped.
type natLogOnce struct {
	mu   sync.Mutex
	said map[string]bool
}

func (o *natLogOnce) first(kind string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.said[kind] {
		return false
	}
	if o.said == nil {
		o.said = make(map[string]bool)
	}
	o.said[kind] = true
	return true
}

// lookupNAT returns the translated connections among targets[idx...],
// which share the namespace ns, by their own tuple. When conntrack cannot
// be asked (not loaded, no CAP_NET_ADMIN, any error) it returns what it has
// and every other connection is watched on its own tuple, as without NAT;
// each kind of failure is logged once.
func (p *Prober) lookupNAT(ns string, targets []Target, idx []int) map[flowKey]natFlow {
	if p.nat == nil || len(idx) == 0 {
		return nil
	}
	conns := make([]flowKey, len(idx))
	for j, i := range idx {
		conns[j] = newFlowKey(targets[i].Local, targets[i].Remote)
	}
	found, err := p.nat(ns, conns)
	switch {
	case errors.Is(err, errNoConntrack):
		if p.natLog.first("none") {
			p.log.Info("probe: conntrack is not loaded, so no connection is NATed: replies are matched on each socket's own tuple")
		}
		return nil
	case errors.Is(err, syscall.EPERM):
		if p.natLog.first("eperm") {
			p.log.Warn("probe: conntrack lookups need CAP_NET_ADMIN: a connection NATed in its own namespace is matched on its own tuple and may look silent", "netns", ns, "err", err)
		}
	case err != nil:
		if p.natLog.first("error") {
			p.log.Warn("probe: conntrack lookup failed: a connection NATed in its own namespace is matched on its own tuple and may look silent", "netns", ns, "err", err)
		}
	}
	var m map[flowKey]natFlow
	for j, n := range found {
		if j < len(conns) && n.translated() {
			if m == nil {
				m = make(map[flowKey]natFlow)
			}
			m[conns[j]] = n
		}
	}
	return m
}
