package probe

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/net/bpf"
)

// ErrUnsupported is returned where raw probe sockets do not exist (non-Linux).
var ErrUnsupported = errors.New("probe: raw probes are not supported on this platform")

// rawConn is one network namespace's probe sockets: a send path for whole IP
// datagrams and a capture of possible replies, each starting at the IP header.
// openRawConn(nsPath, ports) opens one; ports are the probed local ports.
type rawConn interface {
	send(pkt []byte, dst netip.Addr, rt route) error
	// recv blocks until a captured datagram arrives or the conn is closed.
	recv(buf []byte) (int, error)
	close() error
}

// route is how a probe leaves, so that it follows the probed socket's own
// segments: the socket's SO_MARK (policy routing), the interface it is bound
// to (SO_BINDTODEVICE, a VRF) and its TOS / traffic class (routing by TOS,
// and the value written into the probe's header). The zero route is the
// namespace's plain routing.
type route struct {
	mark    uint32
	ifindex int
	tos     uint8
}

// routeOf returns the route of the socket whose state st is; nil (blind) is
// the plain route.
func routeOf(st *SeqState, v4 bool) route {
	if st == nil {
		return route{}
	}
	rt := route{mark: st.Mark, ifindex: st.BoundIf, tos: st.TClass}
	if v4 {
		rt.tos = st.TOS
	}
	return rt
}

// captureCounter is a rawConn that counts what its capture lost.
type captureCounter interface {
	// captureStats returns and resets the counts: datagrams dropped for
	// want of buffer space, and datagrams refused for a bad checksum.
	captureStats() (drops, badChecksum uint64)
}

// flowKey names a probed connection from the local side; addresses are unmapped.
type flowKey struct{ local, remote netip.AddrPort }

func newFlowKey(local, remote netip.AddrPort) flowKey {
	return flowKey{
		local:  netip.AddrPortFrom(local.Addr().Unmap(), local.Port()),
		remote: netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()),
	}
}

// echoKey names an outstanding ICMP echo.
type echoKey struct {
	peer netip.Addr
	id   uint16
}

// waiterDepth is how many accepted replies a waiter buffers; later ones are
// dropped (a probe only needs the first of a kind) and counted.
const waiterDepth = 8

// waiter is one probe's interest in a flow: what it sent, the socket's
// sequence state, the replies that passed accept and the count of those
// that did not.
type waiter struct {
	ch chan Reply
	st *SeqState // nil: blind probes

	mu       sync.Mutex
	probes   []sentProbe
	rejected Rejects
	icmps    int // ICMP errors queued so far
}

// sent records a probe; call it before the probe leaves, so its answer
// cannot arrive first.
func (w *waiter) sent(p sentProbe) {
	w.mu.Lock()
	w.probes = append(w.probes, p)
	w.mu.Unlock()
}

// offer queues r if it answers the waiter's probes and counts it otherwise.
func (w *waiter) offer(r Reply) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ok, why := accept(r, w.probes, w.st)
	if !ok {
		w.rejected[why]++
		return
	}
	// A router sends at most one error per probe: more are forged or
	// repeated, and must not take the room of the peer's ACK.
	if r.Kind == ReplyUnreachable {
		if w.icmps >= len(w.probes) {
			w.rejected[RejectICMPRepeat]++
			return
		}
		w.icmps++
	}
	select {
	case w.ch <- r:
	default:
		w.rejected[RejectQueueFull]++
	}
}

// rejects returns what the waiter rejected so far.
func (w *waiter) rejects() Rejects {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rejected
}

// engine sends probes and dispatches captured replies to the probes waiting
// for them, inside one network namespace.
type engine struct {
	conn rawConn
	log  *slog.Logger

	mu     sync.Mutex
	flows  map[flowKey][]*waiter
	echoes map[echoKey]chan Reply

	lost, badChecksum atomic.Uint64 // the capture's losses so far (see pollCapture)

	done chan struct{} // closed when the read loop ends

	// NAT in the namespace (setNAT), under mu: translated connections by
	// their own tuple, and their answers' tuples to their own.
	nat   map[flowKey]natFlow
	alias map[flowKey]flowKey
}

func newEngine(c rawConn, log *slog.Logger) *engine {
	e := &engine{
		conn:   c,
		log:    log,
		flows:  make(map[flowKey][]*waiter),
		echoes: make(map[echoKey]chan Reply),
		done:   make(chan struct{}),
	}
	go e.readLoop()
	return e
}

// watch registers interest in replies for one flow, whose socket has the
// sequence state st (nil for blind probes); call the returned func to stop.
// Only replies that accept takes reach the waiter's channel.
func (e *engine) watch(k flowKey, st *SeqState) (*waiter, func()) {
	w := &waiter{ch: make(chan Reply, waiterDepth), st: st}
	e.mu.Lock()
	e.flows[k] = append(e.flows[k], w)
	e.mu.Unlock()
	return w, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		list := e.flows[k]
		for i, c := range list {
			if c == w {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(e.flows, k)
		} else {
			e.flows[k] = list
		}
	}
}

// setNAT registers the translated connections of the namespace, by their
// own tuple: their answers are then also taken on their conntrack reply
// tuple and handed to the waiters of their own.
func (e *engine) setNAT(m map[flowKey]natFlow) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nat = m
	e.alias = make(map[flowKey]flowKey, len(m))
	for own, n := range m {
		if n.key != own {
			e.alias[n.key] = own
		}
	}
}

// natKind names how a target is translated in the namespace ("" if not).
func (e *engine) natKind(t Target) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nat[newFlowKey(t.Local, t.Remote)].kind
}

// ownKey maps an answer's key to the waiters' key: a translated answer
// (NAT in the namespace, captured before it is undone) to its socket's own
// tuple; anything else to itself. Called with mu held.
func (e *engine) ownKey(k flowKey) flowKey {
	if own, ok := e.alias[k]; ok {
		return own
	}
	return k
}

// watchEcho registers interest in an echo reply.
func (e *engine) watchEcho(k echoKey) (<-chan Reply, func()) {
	ch := make(chan Reply, 1)
	e.mu.Lock()
	e.echoes[k] = ch
	e.mu.Unlock()
	return ch, func() {
		e.mu.Lock()
		if e.echoes[k] == ch {
			delete(e.echoes, k)
		}
		e.mu.Unlock()
	}
}

// dispatch hands one captured datagram to whoever waits for it, if it
// answers their probes.
func (e *engine) dispatch(pkt []byte) {
	r, err := ParseReply(pkt)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var ws []*waiter
	switch r.Kind {
	case ReplyACK, ReplyRST:
		ws = e.flows[e.ownKey(newFlowKey(r.Dst, r.Src))]
	case ReplyUnreachable:
		ws = e.flows[e.ownKey(newFlowKey(r.Src, r.Dst))]
	case ReplyEcho:
		if ch, ok := e.echoes[echoKey{r.From.Unmap(), r.EchoID}]; ok {
			select {
			case ch <- r:
			default:
			}
		}
	}
	for _, w := range ws {
		w.offer(r)
	}
}

func (e *engine) readLoop() {
	defer close(e.done)
	buf := make([]byte, captureSnapICMP)
	for {
		n, err := e.conn.recv(buf)
		if err != nil {
			if !errors.Is(err, errConnClosed) {
				e.log.Warn("probe: capture stopped", "err", err)
			}
			return
		}
		e.dispatch(buf[:n])
	}
}

func (e *engine) send(pkt []byte, dst netip.Addr, rt route) error {
	if err := e.conn.send(pkt, dst.Unmap(), rt); err != nil {
		return fmt.Errorf("probe: send to %s: %w", dst, err)
	}
	return nil
}

// pollCapture collects the capture's counts and returns how many datagrams
// it has lost since the engine started (0 when the conn does not count).
func (e *engine) pollCapture() uint64 {
	if cc, ok := e.conn.(captureCounter); ok {
		d, b := cc.captureStats()
		e.lost.Add(d)
		e.badChecksum.Add(b)
	}
	return e.lost.Load()
}

// close stops the capture and waits for the read loop. It returns the
// capture's losses since the engine started.
func (e *engine) close() (drops, badChecksum uint64, err error) {
	e.pollCapture()
	err = e.conn.close()
	<-e.done
	e.pollCapture() // checksum failures counted while the reader stopped
	return e.lost.Load(), e.badChecksum.Load(), err
}

var errConnClosed = errors.New("probe: capture closed")

// maxFilterPorts is the most local ports the capture filter checks; beyond
// that it keeps every port's replies and the engine matches in user space.
const maxFilterPorts = 64

// captureSnap is how many bytes of each TCP segment the filter keeps: a
// whole reply (a pure ACK or a RST without payload, options included) fits,
// so its checksum can be verified; a longer one is truncated and fails
// verification.
const captureSnap = 256

// captureSnapICMP is how many bytes of an ICMP or ICMPv6 message the filter
// keeps: a whole error fits (an ICMPv4 error is at most 576 bytes, an
// ICMPv6 error at most the IPv6 minimum MTU, RFC 4443), so its checksum
// can be verified.
const captureSnapICMP = 1280

// captureFilter is the classic BPF program on the capture socket, which sees
// datagrams from the IP header on (a SOCK_DGRAM packet socket). It keeps
// TCP segments with RST, TCP segments with ACK and no payload (not SYN), ICMP
// destination unreachable and echo replies, for IPv4 and IPv6 without
// extension headers. With hostOnly it first drops every frame that was not
// addressed to this host (PACKET_HOST): what this host sends, and frames for
// other hosts seen on a bridge port or a veth, which the kernel drops too.
// That needs a kernel ancillary load that x/net/bpf's VM cannot run. With
// up to maxFilterPorts local ports, TCP segments to other ports are dropped
// in the kernel too, so a busy namespace's traffic does not reach ghostd.
func captureFilter(hostOnly bool, ports []uint16) ([]bpf.Instruction, error) {
	ports = slices.Compact(slices.Sorted(slices.Values(ports)))
	if len(ports) > maxFilterPorts {
		ports = nil
	}
	portCheck := func(p *bpfProg, label string) {
		if len(ports) == 0 {
			return
		}
		for _, port := range ports {
			p.jeq(uint32(port), label, "")
		}
		p.add(bpf.RetConstant{Val: 0})
		p.label(label)
	}
	const (
		packetHost = 0 // PACKET_HOST
	)
	p := &bpfProg{}
	if hostOnly {
		p.add(bpf.LoadExtension{Num: bpf.ExtType}) // SKF_AD_PKTTYPE
		p.jeq(packetHost, "", "drop")
	}
	p.add(bpf.LoadAbsolute{Off: 0, Size: 1})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	p.jeq(4, "v4", "")
	p.jeq(6, "v6", "drop")

	p.label("v4")
	p.add(bpf.LoadAbsolute{Off: ipv4Protocol, Size: 1})
	p.jeq(ProtoTCP, "tcp4", "")
	p.jeq(ProtoICMP, "icmp4", "drop")
	p.label("tcp4")
	p.add(bpf.LoadAbsolute{Off: ipv4FlagsFrag, Size: 2})
	p.jset(ipv4FragOffsetMask|ipv4FlagMoreFrags, "drop", "")
	p.add(bpf.LoadMemShift{Off: 0}) // X = IPv4 header length
	if len(ports) > 0 {
		p.add(bpf.LoadIndirect{Off: tcpDstPort, Size: 2})
		portCheck(p, "port4")
	}
	p.add(bpf.LoadIndirect{Off: tcpFlags, Size: 1})
	p.jset(uint32(FlagSYN), "drop", "")
	p.jset(uint32(FlagRST), "keep", "")
	p.jset(uint32(FlagACK), "", "drop")
	// No payload: total length == IP header + TCP data offset.
	p.add(bpf.LoadIndirect{Off: tcpDataOff, Size: 1})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 2})
	p.add(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	p.add(bpf.TAX{})
	p.add(bpf.LoadAbsolute{Off: ipv4TotalLen, Size: 2})
	p.jeqX("keep", "drop")
	p.label("icmp4")
	p.add(bpf.LoadMemShift{Off: 0})
	p.add(bpf.LoadIndirect{Off: 0, Size: 1})
	p.jeq(icmpUnreachable, "keepicmp", "")
	p.jeq(icmpEchoReply, "keepicmp", "drop")

	p.label("v6")
	p.add(bpf.LoadAbsolute{Off: ipv6NextHeader, Size: 1})
	p.jeq(ProtoTCP, "tcp6", "")
	p.jeq(ProtoICMPv6, "icmp6", "drop")
	p.label("tcp6")
	if len(ports) > 0 {
		p.add(bpf.LoadAbsolute{Off: IPv6Size + tcpDstPort, Size: 2})
		portCheck(p, "port6")
	}
	p.add(bpf.LoadAbsolute{Off: IPv6Size + tcpFlags, Size: 1})
	p.jset(uint32(FlagSYN), "drop", "")
	p.jset(uint32(FlagRST), "keep", "")
	p.jset(uint32(FlagACK), "", "drop")
	p.add(bpf.LoadAbsolute{Off: IPv6Size + tcpDataOff, Size: 1})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 2})
	p.add(bpf.TAX{})
	p.add(bpf.LoadAbsolute{Off: ipv6PayloadLen, Size: 2})
	p.jeqX("keep", "drop")
	p.label("icmp6")
	p.add(bpf.LoadAbsolute{Off: IPv6Size, Size: 1})
	p.jeq(icmpv6Unreachable, "keepicmp", "")
	p.jeq(icmpv6EchoReply, "keepicmp", "drop")

	p.label("keepicmp")
	p.add(bpf.RetConstant{Val: captureSnapICMP})
	p.label("keep")
	p.add(bpf.RetConstant{Val: captureSnap})
	p.label("drop")
	p.add(bpf.RetConstant{Val: 0})
	return p.assemble()
}

// bpfProg is a tiny assembler for forward jumps to named labels.
type bpfProg struct {
	ins    []bpf.Instruction
	jumps  map[int][2]string // instruction index → (true, false) targets; "" = next
	labels map[string]int
}

func (p *bpfProg) add(i bpf.Instruction) { p.ins = append(p.ins, i) }

func (p *bpfProg) label(name string) {
	if p.labels == nil {
		p.labels = make(map[string]int)
	}
	p.labels[name] = len(p.ins)
}

func (p *bpfProg) jump(i bpf.Instruction, t, f string) {
	if p.jumps == nil {
		p.jumps = make(map[int][2]string)
	}
	p.jumps[len(p.ins)] = [2]string{t, f}
	p.add(i)
}

func (p *bpfProg) jeq(v uint32, t, f string) {
	p.jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: v}, t, f)
}

func (p *bpfProg) jset(v uint32, t, f string) {
	p.jump(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: v}, t, f)
}

func (p *bpfProg) jeqX(t, f string) {
	p.jump(bpf.JumpIfX{Cond: bpf.JumpEqual}, t, f)
}

func (p *bpfProg) assemble() ([]bpf.Instruction, error) {
	skip := func(at int, name string) (uint8, error) {
		if name == "" {
			return 0, nil
		}
		to, ok := p.labels[name]
		if !ok || to <= at || to-at-1 > 255 {
			return 0, fmt.Errorf("probe: bpf: bad jump from %d to %q", at, name)
		}
		return uint8(to - at - 1), nil
	}
	for at, tf := range p.jumps {
		st, err := skip(at, tf[0])
		if err != nil {
			return nil, err
		}
		sf, err := skip(at, tf[1])
		if err != nil {
			return nil, err
		}
		switch j := p.ins[at].(type) {
		case bpf.JumpIf:
			j.SkipTrue, j.SkipFalse = st, sf
			p.ins[at] = j
		case bpf.JumpIfX:
			j.SkipTrue, j.SkipFalse = st, sf
			p.ins[at] = j
		}
	}
	return p.ins, nil
}
