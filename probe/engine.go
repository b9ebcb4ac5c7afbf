package probe

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/ghostd/ghostd/probe/internal/wire"
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
	ch chan wire.Reply
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
func (w *waiter) offer(r wire.Reply) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ok, why := accept(r, w.probes, w.st)
	if !ok {
		w.rejected[why]++
		return
	}
	// A router sends at most one error per probe: more are forged or
	// repeated, and must not take the room of the peer's ACK.
	if r.Kind == wire.ReplyUnreachable {
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
	echoes map[echoKey]chan wire.Reply

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
		echoes: make(map[echoKey]chan wire.Reply),
		done:   make(chan struct{}),
	}
	go e.readLoop()
	return e
}

// watch registers interest in replies for one flow, whose socket has the
// sequence state st (nil for blind probes); call the returned func to stop.
// Only replies that accept takes reach the waiter's channel.
func (e *engine) watch(k flowKey, st *SeqState) (*waiter, func()) {
	w := &waiter{ch: make(chan wire.Reply, waiterDepth), st: st}
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
func (e *engine) watchEcho(k echoKey) (<-chan wire.Reply, func()) {
	ch := make(chan wire.Reply, 1)
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
	r, err := wire.ParseReply(pkt)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var ws []*waiter
	switch r.Kind {
	case wire.ReplyACK, wire.ReplyRST:
		ws = e.flows[e.ownKey(newFlowKey(r.Dst, r.Src))]
	case wire.ReplyUnreachable:
		ws = e.flows[e.ownKey(newFlowKey(r.Src, r.Dst))]
	case wire.ReplyEcho:
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
	buf := make([]byte, wire.SnapICMP)
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
