package probe

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/ghostd/ghostd/probe/internal/wire"
)

// This file probes one target: the attempts, the segments they send (shaped
// like the socket's own keepalive), what their answers prove, and the host
// hint.

// guarded probes one target under its host's concurrency cap, turning a
// panic into an error.
func (p *Prober) guarded(ctx context.Context, cfg *Config, d *demux, t Target, st *SeqState) (res Result) {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("probe: panic", "remote", t.Remote, "panic", v, "stack", string(debug.Stack()))
			res = unprobed(fmt.Errorf("probe: panic probing %s: %v", t.Remote, v))
		}
	}()
	host := t.Remote.Addr().Unmap()
	release, err := p.hosts.acquire(ctx, host, cfg.PerHost)
	if err != nil {
		return unprobed(err)
	}
	defer release()
	return p.probeOne(ctx, cfg, d, t, st)
}

// numbers returns a probe's sequence, acknowledgement and window fields.
func (p *Prober) numbers(cfg *Config, st *SeqState) (seq, ack uint32, win uint16) {
	if st == nil {
		return rand.Uint32(), rand.Uint32(), 512
	}
	seq = st.SndUna - 1 // keepalive-shaped: one byte the peer already has
	ack = st.RcvNxt - 1 // outside our own window: the peer's RST cannot reset us
	if cfg.ResetLocal {
		ack = st.RcvNxt
	}
	w := st.RcvWnd >> min(st.RcvWScale, 14)
	return seq, ack, uint16(min(w, math.MaxUint16))
}

// segment appends one probe for t to buf and returns it with the numbers a
// reply is matched against (accept.go). With the socket's state it is the segment the socket's own
// keepalive would send: in-window numbers, the socket's TOS / traffic class
// and flow label, and the timestamp option when the connection negotiated
// it (TSval on the socket's clock, TSecr = TS.Recent), so a peer that checks
// PAWS (RFC 7323) accepts it.
func (p *Prober) segment(buf []byte, cfg *Config, t Target, st *SeqState, tos uint8) ([]byte, sentProbe, error) {
	seq, ack, win := p.numbers(cfg, st)
	seg := wire.Segment{
		Src: netip.AddrPortFrom(t.Local.Addr().Unmap(), t.Local.Port()), Dst: netip.AddrPortFrom(t.Remote.Addr().Unmap(), t.Remote.Port()),
		Seq: seq, Ack: ack, Flags: wire.FlagACK, Window: win, ID: uint16(rand.Uint32()), TOS: tos,
	}
	sent := sentProbe{seq: seq, ack: ack, id: seg.ID}
	if !t.Remote.Addr().Unmap().Is4() {
		sent.id = 0 // IPv6 has no identification field
	}
	if st != nil {
		seg.FlowLabel = st.FlowLabel
		if st.TSOK {
			now, err := p.mono()
			if err != nil {
				return nil, sent, err
			}
			seg.TS = &wire.Timestamp{Val: tsVal(st, now), Ecr: st.TSRecent}
		}
	}
	pkt, err := wire.AppendSegment(buf, seg)
	return pkt, sent, err
}

// tsVal is the TSval the socket would send at now (CLOCK_MONOTONIC): Linux
// stamps segments with its TCP clock, that monotonic clock in milliseconds
// (microseconds for tcp_usec_ts sockets), plus the socket's random offset
// (tcp_skb_timestamp_ts in include/net/tcp.h).
func tsVal(st *SeqState, now time.Duration) uint32 {
	unit := time.Millisecond
	if st.USecTS {
		unit = time.Microsecond
	}
	return uint32(now/unit) + st.TSOffset
}

func (p *Prober) probeOne(ctx context.Context, cfg *Config, d *demux, t Target, st *SeqState) (out Result) {
	res := Result{Verdict: Unprobed, Mode: Blind}
	if st != nil {
		res.Mode = InWindow
	}
	local, remote := t.Local.Addr().Unmap(), t.Remote.Addr().Unmap()
	// The demux queues only what accept takes (accept.go); the rest is
	// counted on the result.
	w, stop := d.watch(newFlowKey(t.Local, t.Remote), st)
	defer stop()
	res.NAT = d.natKind(t) // NAT in the namespace: see demux.setNAT
	if cfg.HostHint {
		p.hints.observe(t.Remote, cfg.Now()) // hosthint.go
	}
	// The reset guard (guard.go): acknowledge RCV.NXT behind it.
	if disarm, ok := p.arm(cfg, t, st, res.NAT); ok {
		defer disarm()
		guardedCfg := *cfg
		guardedCfg.ResetLocal, cfg, res.Guarded = true, &guardedCfg, true
	}
	defer func() { out.Rejected = w.rejects() }()
	replies := w.ch
	// Capture losses and bad checksums not yet polled count against this
	// probe: the safe side.
	lostBefore, badBefore := d.lost.Load(), d.badChecksum.Load()

	buf := make([]byte, 0, wire.IPv6Size+wire.TCPMinSize+wire.TCPTimestampSize)
	rt := routeOf(st, local.Is4())
	var lastSent time.Time
	unreachable := false
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for attempt := 0; attempt < cfg.Attempts; attempt++ {
		if attempt > 0 { // probeNamespace took the first attempt's token
			if err := p.limiter.Wait(ctx); err != nil {
				return interrupted(res, err)
			}
		}
		pkt, sp, err := p.segment(buf[:0], cfg, t, st, rt.tos)
		if err != nil {
			return unprobed(fmt.Errorf("probe: %s→%s: %w", t.Local, t.Remote, err))
		}
		w.sent(sp)
		lastSent = cfg.Now()
		if err := d.send(pkt, remote, rt); err != nil {
			return unprobed(err)
		}
		res.Sent++

		wait := jitter(cfg.Interval)
		if attempt == cfg.Attempts-1 {
			wait = max(cfg.Timeout, min(t.RTO, MaxAnswerWait))
		}
		timer.Reset(wait)
	waiting:
		for {
			select {
			case <-ctx.Done():
				return interrupted(res, ctx.Err())
			case <-timer.C:
				break waiting
			case r := <-replies:
				switch r.kind {
				case wire.ReplyACK:
					p.replied(cfg, &res, lastSent)
					res.Verdict, res.Confirmed = Alive, true
					return res
				case wire.ReplyRST:
					p.replied(cfg, &res, lastSent)
					res.Verdict, res.Confirmed = Reset, true
					if st == nil && !t.KernelEvidence {
						// Maybe not the peer's word: see UncertainBlind.
						res.Uncertain, res.Confirmed = UncertainBlind, false
					}
					res.ClosedLocal = p.closedLocal(cfg, t, st, r.seq) && (!res.Guarded || cfg.StillExists != nil)
					return res
				case wire.ReplyUnreachable:
					// Keep probing: an ACK later still proves the peer alive.
					p.replied(cfg, &res, lastSent)
					unreachable = true
				}
			}
		}
	}
	res.Verdict = Silent
	if unreachable {
		res.Verdict = Unreachable
	}
	// Every attempt went out unanswered. Blind silence proves nothing by
	// itself: stateful middleboxes drop out-of-window segments. Nor does
	// silence amid packets for the 4-tuple that answer none of our probes,
	// or while the capture lost datagrams: the answer may have been lost.
	// An ICMP error amid forged packets is no better: on IPv6 (no IP id)
	// an on-path forger can quote a probe exactly, and many such errors
	// could crowd out the real answer.
	if res.Verdict == Silent || res.Verdict == Unreachable {
		lost := d.pollCapture() > lostBefore
		switch {
		case w.rejects().Total() > 0, d.badChecksum.Load() > badBefore:
			res.Uncertain = UncertainInterference
		case lost:
			res.Uncertain = UncertainCaptureLost
		case unreachable && st == nil && !t.KernelEvidence:
			res.Uncertain = UncertainBlind
		}
	}
	res.Confirmed = unreachable && res.Uncertain == "" || res.Mode == InWindow && res.Uncertain == "" || t.KernelEvidence
	if cfg.HostHint && res.Verdict == Silent {
		p.hint(ctx, cfg, d, t, &res, route{mark: rt.mark, ifindex: rt.ifindex}) // hosthint.go
	}
	return res
}

// interrupted ends a probe cut short by ctx: nothing is concluded.
func interrupted(res Result, err error) Result {
	res.Verdict, res.Confirmed, res.Err = Unprobed, false, err
	return res
}

func (p *Prober) replied(cfg *Config, res *Result, lastSent time.Time) {
	if res.Replies == 0 {
		res.RTT = max(cfg.Now().Sub(lastSent), 1)
	}
	res.Replies++
}

func (p *Prober) closedLocal(cfg *Config, t Target, st *SeqState, rstSeq uint32) bool {
	if cfg.StillExists != nil {
		return !cfg.StillExists(t)
	}
	// The kernel accepts a RST whose sequence number is exactly RCV.NXT.
	return st != nil && rstSeq == st.RcvNxt
}

// echo sends one ICMP echo to the peer's host and waits Timeout for the reply.
func (p *Prober) echo(ctx context.Context, cfg *Config, d *demux, local, remote netip.Addr, rt route) (bool, error) {
	if err := p.limiter.Wait(ctx); err != nil {
		return false, err
	}
	id, seq := uint16(rand.Uint32()), uint16(rand.Uint32())
	pkt, err := wire.AppendEcho(nil, local, remote, id, seq)
	if err != nil {
		return false, err
	}
	ch, stop := d.watchEcho(echoKey{remote, id})
	defer stop()
	if err := d.send(pkt, remote, rt); err != nil {
		return false, err
	}
	timer := time.NewTimer(cfg.Timeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.C:
			return false, nil
		case r := <-ch:
			if r.EchoSeq == seq {
				return true, nil
			}
		}
	}
}
