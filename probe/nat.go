package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/ghostd/ghostd/probe/internal/wire"
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

// errCTViaProc means ctnetlink refused the lookup (no CAP_NET_ADMIN) and the
// namespace's /proc/net/nf_conntrack answered instead: the result is good.
var errCTViaProc = errors.New("probe: conntrack read from /proc/net/nf_conntrack")

// natFromProc reads a namespace's conntrack table in /proc/net/nf_conntrack
// text form and matches every connection against it.
func natFromProc(r io.Reader, conns []flowKey) ([]natFlow, error) {
	want := make(map[flowKey]int, len(conns))
	for i, k := range conns {
		want[k] = i
	}
	out := make([]natFlow, len(conns))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		e, ok := parseProcConntrackLine(sc.Bytes())
		if !ok || e.proto != wire.ProtoTCP {
			continue
		}
		for _, d := range [2]ctTuple{e.orig, e.reply} {
			k := newFlowKey(d.src, d.dst)
			if i, ok := want[k]; ok {
				out[i], _ = natFromEntry(k, e.orig, e.reply)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("probe: read /proc/net/nf_conntrack: %w", err)
	}
	return out, nil
}

// parseProcConntrackLine parses one line of /proc/net/nf_conntrack:
//
//	ipv4 2 tcp 6 431999 ESTABLISHED src=A dst=B sport=1 dport=2 src=B dst=A sport=2 dport=1 [ASSURED] mark=0 use=2
//
// The first src/dst/sport/dport are the original direction, the second
// the reply. ok is false for anything else.
func parseProcConntrackLine(line []byte) (e ctEntry, ok bool) {
	fields := strings.Fields(string(line))
	if len(fields) < 5 {
		return e, false
	}
	proto, err := strconv.ParseUint(fields[3], 10, 8)
	if err != nil {
		return e, false
	}
	e.proto = uint8(proto)
	var addrs [2][2]netip.Addr // [direction][src, dst]
	var ports [2][2]uint16
	var seen [2][4]bool
	for _, f := range fields[4:] {
		key, val, found := strings.Cut(f, "=")
		if !found {
			continue
		}
		slot := -1
		switch key {
		case "src":
			slot = 0
		case "dst":
			slot = 1
		case "sport":
			slot = 2
		case "dport":
			slot = 3
		default:
			continue
		}
		dir := 0
		if seen[0][slot] {
			dir = 1
		}
		if seen[dir][slot] {
			continue // a third one: not the layout we know
		}
		seen[dir][slot] = true
		if slot < 2 {
			a, err := netip.ParseAddr(val)
			if err != nil {
				return ctEntry{}, false
			}
			addrs[dir][slot] = a
		} else {
			p, err := strconv.ParseUint(val, 10, 16)
			if err != nil {
				return ctEntry{}, false
			}
			ports[dir][slot-2] = uint16(p)
		}
	}
	for d := range 2 {
		for s := range 4 {
			if !seen[d][s] {
				return ctEntry{}, false
			}
		}
		if addrs[d][0].Is4() != addrs[d][1].Is4() {
			return ctEntry{}, false
		}
	}
	e.orig = ctTuple{netip.AddrPortFrom(addrs[0][0], ports[0][0]), netip.AddrPortFrom(addrs[0][1], ports[0][1])}
	e.reply = ctTuple{netip.AddrPortFrom(addrs[1][0], ports[1][0]), netip.AddrPortFrom(addrs[1][1], ports[1][1])}
	return e, true
}

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
func (p *Prober) lookupNAT(ns string, targets []Target, idx []int) (nat map[flowKey]natFlow, known bool) {
	if p.nat == nil || len(idx) == 0 {
		return nil, true
	}
	conns := make([]flowKey, len(idx))
	for j, i := range idx {
		conns[j] = newFlowKey(targets[i].Local, targets[i].Remote)
	}
	found, err := p.nat(ns, conns)
	known = true
	switch {
	case errors.Is(err, errNoConntrack):
		if p.natLog.first("none") {
			p.log.Info("probe: conntrack is not loaded, so no connection is NATed: replies are matched on each socket's own tuple")
		}
		return nil, true
	case errors.Is(err, errCTViaProc):
		if p.natLog.first("proc") {
			p.log.Info("probe: conntrack netlink needs CAP_NET_ADMIN; reading NAT from /proc/net/nf_conntrack instead", "netns", ns)
		}
	case errors.Is(err, syscall.EPERM):
		known = false
		if p.natLog.first("eperm") {
			p.log.Warn("probe: conntrack lookups need CAP_NET_ADMIN: a connection NATed in its own namespace would look silent, so silence there is uncertain (nat_unknown)", "netns", ns, "err", err)
		}
	case err != nil:
		known = false
		if p.natLog.first("error") {
			p.log.Warn("probe: conntrack lookup failed: a connection NATed in its own namespace would look silent, so silence there is uncertain (nat_unknown)", "netns", ns, "err", err)
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
	return m, known
}

// reprobeTranslated probes again the silent targets of a namespace round
// that had no conntrack entry when the round began but have a translated
// one now. A connection whose entry was flushed while it was idle gets a new
// one from its first probe, through the namespace's NAT rules, and its
// answer then comes on a tuple the round did not watch: without this it
// would be a false ghost until the next round.
func (p *Prober) reprobeTranslated(ctx context.Context, cfg *Config, inflight chan struct{}, ns string, targets []Target, idx []int, states map[int]*SeqState, results []Result) {
	if p.nat == nil || ctx.Err() != nil {
		return
	}
	var silent []int
	for _, i := range idx {
		if r := results[i]; r.Verdict == Silent && r.NAT == "" && r.Err == nil && r.Sent > 0 {
			silent = append(silent, i)
		}
	}
	if len(silent) == 0 {
		return
	}
	nat, _ := p.lookupNAT(ns, targets, silent)
	if len(nat) == 0 {
		return
	}
	ports := make([]uint16, 0, 2*len(nat))
	for k, n := range nat {
		ports = append(ports, k.local.Port(), n.key.local.Port())
	}
	conn, err := p.open(ns, ports)
	if err != nil {
		p.log.Warn("probe: reprobe NATed connections", "netns", ns, "err", err)
		return
	}
	d := newDemux(conn, p.log)
	d.setNAT(nat)
	defer func() {
		if _, _, err := d.close(); err != nil {
			p.log.Warn("probe: close sockets", "netns", ns, "err", err)
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, i := range silent {
		t := targets[i]
		if _, ok := nat[newFlowKey(t.Local, t.Remote)]; !ok {
			continue
		}
		if err := p.limiter.Wait(ctx); err != nil {
			return
		}
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
			return
		}
		p.log.Debug("probe: conntrack entry recreated by the probe; probing again on its reply tuple", "netns", ns, "local", t.Local, "remote", t.Remote)
		wg.Go(func() {
			defer func() { <-inflight }()
			first := results[i].Sent
			r := p.guarded(ctx, cfg, d, t, states[i])
			if r.Verdict == Unprobed {
				return // keep the first pass's verdict
			}
			r.Sent += first // every probe sent is counted once
			results[i] = r
		})
	}
}
