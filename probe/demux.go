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

// demux sends probes and dispatches captured replies to the probes waiting
// for them, inside one network namespace.
type demux struct {
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

func newDemux(c rawConn, log *slog.Logger) *demux {
	d := &demux{
		conn:   c,
		log:    log,
		flows:  make(map[flowKey][]*waiter),
		echoes: make(map[echoKey]chan wire.Reply),
		done:   make(chan struct{}),
	}
	go d.readLoop()
	return d
}

// watch registers interest in replies for one flow, whose socket has the
// sequence state st (nil for blind probes); call the returned func to stop.
// Only replies that accept takes reach the waiter's channel.
func (d *demux) watch(k flowKey, st *SeqState) (*waiter, func()) {
	w := &waiter{ch: make(chan wire.Reply, waiterDepth), st: st}
	d.mu.Lock()
	d.flows[k] = append(d.flows[k], w)
	d.mu.Unlock()
	return w, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		list := d.flows[k]
		for i, c := range list {
			if c == w {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(d.flows, k)
		} else {
			d.flows[k] = list
		}
	}
}

// setNAT registers the translated connections of the namespace, by their
// own tuple: their answers are then also taken on their conntrack reply
// tuple and handed to the waiters of their own.
func (d *demux) setNAT(m map[flowKey]natFlow) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nat = m
	d.alias = make(map[flowKey]flowKey, len(m))
	for own, n := range m {
		if n.key != own {
			d.alias[n.key] = own
		}
	}
}

// natKind names how a target is translated in the namespace ("" if not).
func (d *demux) natKind(t Target) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nat[newFlowKey(t.Local, t.Remote)].kind
}

// ownKey maps an answer's key to the waiters' key: a translated answer
// (NAT in the namespace, captured before it is undone) to its socket's own
// tuple; anything else to itself. Called with mu held.
func (d *demux) ownKey(k flowKey) flowKey {
	if own, ok := d.alias[k]; ok {
		return own
	}
	return k
}

// watchEcho registers interest in an echo reply.
func (d *demux) watchEcho(k echoKey) (<-chan wire.Reply, func()) {
	ch := make(chan wire.Reply, 1)
	d.mu.Lock()
	d.echoes[k] = ch
	d.mu.Unlock()
	return ch, func() {
		d.mu.Lock()
		if d.echoes[k] == ch {
			delete(d.echoes, k)
		}
		d.mu.Unlock()
	}
}

// dispatch hands one captured datagram to whoever waits for it, if it
// answers their probes.
func (d *demux) dispatch(pkt []byte) {
	r, err := wire.ParseReply(pkt)
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var ws []*waiter
	switch r.Kind {
	case wire.ReplyACK, wire.ReplyRST:
		ws = d.flows[d.ownKey(newFlowKey(r.Dst, r.Src))]
	case wire.ReplyUnreachable:
		ws = d.flows[d.ownKey(newFlowKey(r.Src, r.Dst))]
	case wire.ReplyEcho:
		if ch, ok := d.echoes[echoKey{r.From.Unmap(), r.EchoID}]; ok {
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

func (d *demux) readLoop() {
	defer close(d.done)
	buf := make([]byte, wire.SnapICMP)
	for {
		n, err := d.conn.recv(buf)
		if err != nil {
			if !errors.Is(err, errConnClosed) {
				d.log.Warn("probe: capture stopped", "err", err)
			}
			return
		}
		d.dispatch(buf[:n])
	}
}

func (d *demux) send(pkt []byte, dst netip.Addr, rt route) error {
	if err := d.conn.send(pkt, dst.Unmap(), rt); err != nil {
		return fmt.Errorf("probe: send to %s: %w", dst, err)
	}
	return nil
}

// pollCapture collects the capture's counts and returns how many datagrams
// it has lost since the demux started (0 when the conn does not count).
func (d *demux) pollCapture() uint64 {
	if cc, ok := d.conn.(captureCounter); ok {
		drops, bad := cc.captureStats()
		d.lost.Add(drops)
		d.badChecksum.Add(bad)
	}
	return d.lost.Load()
}

// close stops the capture and waits for the read loop. It returns the
// capture's losses since the demux started.
func (d *demux) close() (drops, badChecksum uint64, err error) {
	d.pollCapture()
	err = d.conn.Close()
	<-d.done
	d.pollCapture() // checksum failures counted while the reader stopped
	return d.lost.Load(), d.badChecksum.Load(), err
}
