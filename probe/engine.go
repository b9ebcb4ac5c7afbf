package probe

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"golang.org/x/net/bpf"
)

// ErrUnsupported is returned where raw probe sockets do not exist (non-Linux).
var ErrUnsupported = errors.New("probe: raw probes are not supported on this platform")

// rawConn is one network namespace's probe sockets: a send path for whole IP
// datagrams and a capture of possible replies, each starting at the IP header.
// openRawConn(nsPath, ports) opens one; ports are the probed local ports.
type rawConn interface {
	send(pkt []byte, dst netip.Addr) error
	// recv blocks until a captured datagram arrives or the conn is closed.
	recv(buf []byte) (int, error)
	close() error
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

// waiterDepth is how many unread replies a waiter buffers; later ones are
// dropped (a probe only needs the first of a kind).
const waiterDepth = 8

// engine sends probes and dispatches captured replies to the probes waiting
// for them, inside one network namespace.
type engine struct {
	conn rawConn
	log  *slog.Logger

	mu      sync.Mutex
	flows   map[flowKey][]chan Reply
	echoes  map[echoKey]chan Reply
	dropped uint64 // replies a full waiter could not take

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
		flows:  make(map[flowKey][]chan Reply),
		echoes: make(map[echoKey]chan Reply),
		done:   make(chan struct{}),
	}
	go e.readLoop()
	return e
}

// watch registers interest in replies for one flow; call the returned func to stop.
func (e *engine) watch(k flowKey) (<-chan Reply, func()) {
	ch := make(chan Reply, waiterDepth)
	e.mu.Lock()
	e.flows[k] = append(e.flows[k], ch)
	e.mu.Unlock()
	return ch, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		list := e.flows[k]
		for i, c := range list {
			if c == ch {
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

// dispatch hands one captured datagram to whoever waits for it.
func (e *engine) dispatch(pkt []byte) {
	r, err := ParseReply(pkt)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var chans []chan Reply
	switch r.Kind {
	case ReplyACK, ReplyRST:
		chans = e.flows[e.ownKey(newFlowKey(r.Dst, r.Src))]
	case ReplyUnreachable:
		chans = e.flows[e.ownKey(newFlowKey(r.Src, r.Dst))]
	case ReplyEcho:
		if ch, ok := e.echoes[echoKey{r.From.Unmap(), r.EchoID}]; ok {
			chans = []chan Reply{ch}
		}
	}
	for _, ch := range chans {
		select {
		case ch <- r:
		default:
			e.dropped++
		}
	}
}

func (e *engine) readLoop() {
	defer close(e.done)
	buf := make([]byte, captureSnap)
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

func (e *engine) send(pkt []byte, dst netip.Addr) error {
	if err := e.conn.send(pkt, dst.Unmap()); err != nil {
		return fmt.Errorf("probe: send to %s: %w", dst, err)
	}
	return nil
}

// close stops the capture and waits for the read loop.
func (e *engine) close() error {
	err := e.conn.close()
	<-e.done
	return err
}

var errConnClosed = errors.New("probe: capture closed")

// maxFilterPorts is the most local ports the capture filter checks; beyond
// that it keeps every port's replies and the engine matches in user space.
const maxFilterPorts = 64

// captureSnap is how many bytes of each datagram the filter keeps: enough for
// an ICMPv6 error quoting an IPv6 header and a whole option-less TCP header
// (40 + 8 + 40 + 20), with room for options and extension headers.
const captureSnap = 256

// captureFilter is the classic BPF program on the capture socket, which sees
// datagrams from the IP header on (a SOCK_DGRAM packet socket). It keeps
// TCP segments with RST, TCP segments with ACK and no payload (not SYN), ICMP
// destination unreachable and echo replies, for IPv4 and IPv6 without
// extension headers. With dropOutgoing it first drops what this host sends,
// which needs a kernel ancillary load that x/net/bpf's VM cannot run. With
// up to maxFilterPorts local ports, TCP segments to other ports are dropped
// in the kernel too, so a busy namespace's traffic does not reach ghostd.
func captureFilter(dropOutgoing bool, ports []uint16) ([]bpf.Instruction, error) {
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
		packetOutgoing = 4 // PACKET_OUTGOING
	)
	p := &bpfProg{}
	if dropOutgoing {
		p.add(bpf.LoadExtension{Num: bpf.ExtType})
		p.jeq(packetOutgoing, "drop", "")
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
	p.jeq(icmpUnreachable, "keep", "")
	p.jeq(icmpEchoReply, "keep", "drop")

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
	p.jeq(icmpv6Unreachable, "keep", "")
	p.jeq(icmpv6EchoReply, "keep", "drop")

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
