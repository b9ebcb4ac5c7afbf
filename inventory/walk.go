package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/ghostd/ghostd/inventory/bpfwalk"
)

// Socket sources a Scanner reports in NamespaceResult.Source and Source.
const (
	// SourceSockDiag: one sock_diag dump per namespace.
	SourceSockDiag = "sock_diag"
	// SourceWalk: the namespace's sockets came from the one BPF walk of
	// the kernel's shared TCP tables (inventory/bpfwalk).
	SourceWalk = "bpf_walk"
)

// walkInfoLen is TCPInfo.Len for a socket from the walk: the walk fills
// every field up to and including tcpi_rcv_wnd, and no later one.
const walkInfoLen = OffRcvWnd + 4

// oneWalker is what the Scanner needs from a bpfwalk.Walker.
type oneWalker interface {
	Walk(ctx context.Context, netns []uint64, fn func(*bpfwalk.Record) error) (int, error)
	HZ() int
	Variant() string
	Close() error
}

// walkState is the Scanner's one-walk source. A namespace's sockets come
// from the walk once it is primed (dumped by sock_diag since the walker
// loaded, which gives its older sockets the cookies the walk can only read;
// newer ones get theirs from the walker's hook) and covered (it keeps its
// sockets in the tables the walk walks). Everything else is dumped.
type walkState struct {
	mu      sync.Mutex
	w       oneWalker
	covers  func(ns *Namespace) (bool, error)
	covered map[uint64]bool // by netns inode, checked once
	primed  map[uint64]bool
	errMsg  string // the last walk error, logged when it changes
}

func newWalkState(w oneWalker, covers func(*Namespace) (bool, error)) *walkState {
	return &walkState{
		w: w, covers: covers,
		covered: map[uint64]bool{}, primed: map[uint64]bool{},
	}
}

// jiffiesToMsecs is the kernel's jiffies_to_msecs, rounding up.
func jiffiesToMsecs(j uint32, hz int) uint32 {
	if hz <= 0 {
		return 0
	}
	return uint32((uint64(j)*1000 + uint64(hz) - 1) / uint64(hz))
}

// walkSkew bounds, in seconds, how far after a walk's clock reading a
// socket's own time stamp may be: a pass reads the clock once (walk.c), so
// a busy socket can send or receive while the pass goes on.
const walkSkew = 60

// jiffiesSince is how long before now stamp was (both tcp_jiffies32), in
// milliseconds. A stamp up to walkSkew after now was made during the walk:
// 0 ago, not the 49.7 days that now - stamp wraps to (a busy connection
// then looked idle). Any other stamp converts as tcp_get_info's does.
func jiffiesSince(now, stamp uint32, hz int) uint32 {
	if ahead := stamp - now; ahead != 0 && ahead <= uint32(walkSkew*max(hz, 0)) {
		return 0
	}
	return jiffiesToMsecs(now-stamp, hz)
}

// jiffiesToUsecs is the kernel's jiffies_to_usecs, rounding up.
func jiffiesToUsecs(j uint32, hz int) uint32 {
	if hz <= 0 {
		return 0
	}
	return uint32((uint64(j)*1_000_000 + uint64(hz) - 1) / uint64(hz))
}

// socketFromRecord fills *s as a sock_diag dump reports the same socket,
// with its times converted from the kernel's jiffies (hz a second).
func socketFromRecord(r *bpfwalk.Record, hz int, s *Socket) error {
	*s = Socket{
		Netns:   uint64(r.Netns),
		Family:  r.Family,
		State:   State(r.State),
		Timer:   Timer(r.Timer),
		Retrans: r.Retrans,
		Expires: jiffiesToMsecs(r.TimerLeft, hz),
		RQueue:  r.RQueue,
		WQueue:  r.WQueue,
		UID:     r.UID,
		Inode:   r.Inode,
		Cookie:  r.Cookie,
		Ifindex: r.Ifindex,
	}
	switch r.Family {
	case FamilyInet:
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r.Src[:4])), r.SPort)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r.Dst[:4])), r.DPort)
	case FamilyInet6:
		s.Local = netip.AddrPortFrom(netip.AddrFrom16(r.Src), r.SPort)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16(r.Dst), r.DPort)
	default:
		return fmt.Errorf("%w: walk record family %d", ErrMalformed, r.Family)
	}
	if r.Flags&bpfwalk.FlagInfo == 0 {
		return nil // TIME_WAIT and request sockets: no tcp_info, uid or inode
	}
	now := uint32(r.Now) // tcp_jiffies32
	i := &s.Info
	i.Len = walkInfoLen
	i.State = r.State
	i.SndCwnd = r.SndCwnd
	i.Unacked = r.Unacked
	if State(r.State) == StateListen {
		return nil // tcp_get_info stops here for listeners
	}
	i.CAState = r.CAState
	i.Retransmits = r.Retransmits
	i.Probes = r.Probes
	i.Backoff = r.Backoff
	i.Options = r.Options
	i.SndWScale, i.RcvWScale = r.SndWScale, r.RcvWScale
	i.RTO = jiffiesToUsecs(r.RTO, hz)
	i.SndMSS = r.SndMSS
	i.RcvMSS = r.RcvMSS
	i.Lost = r.Lost
	i.Retrans = r.RetransOut
	i.LastDataSent = jiffiesSince(now, r.LSndTime, hz)
	i.LastDataRecv = jiffiesSince(now, r.LRcvTime, hz)
	i.LastAckRecv = jiffiesSince(now, r.RcvTstamp, hz)
	i.RTT = r.SRTTUs >> 3
	i.RTTVar = r.MdevUs >> 2
	i.TotalRetrans = r.TotalRetrans
	i.SetOptional(r.BytesAcked, r.BytesReceived, r.SndWnd, r.RcvWnd)
	return nil
}

// needsCookie reports whether a walked socket lacks the cookie that is its
// identity. Request sockets (SYN_RECV before accept) only get one from a
// sock_diag dump; they are short-lived and never suspects, so they are
// reported with cookie 0 rather than costing their namespace a dump.
func needsCookie(cookie uint64, state, flags uint8) bool {
	return cookie == 0 && !(state == uint8(StateSynRecv) && flags&bpfwalk.FlagInfo == 0)
}

// Source returns which source the Scanner lists sockets with: SourceWalk
// when the one-walk source is loaded (namespaces it does not cover are
// still dumped; see NamespaceResult.Source), else SourceSockDiag.
func (s *Scanner) Source() string {
	if s.walk != nil {
		return SourceWalk
	}
	return SourceSockDiag
}

// scanWithWalk scans todo: primed and covered namespaces from one walk,
// the others with sock_diag dumps. Results come in todo's order.
func (s *Scanner) scanWithWalk(ctx context.Context, todo []*nsEntry, states StateMask, fn func(ns *Namespace, sk *Socket) error) []NamespaceResult {
	ws := s.walk
	ws.mu.Lock()
	defer ws.mu.Unlock()

	results := make([]NamespaceResult, len(todo))
	inTodo := make(map[uint64]bool, len(todo))
	walkIdx := make(map[uint64]int, len(todo)) // netns inode -> index in todo
	var dump []int
	for i, e := range todo {
		e.mu.Lock()
		ns := e.ns
		e.mu.Unlock()
		inTodo[ns.Inode] = true
		if !ws.primed[ns.Inode] {
			dump = append(dump, i)
			continue
		}
		cov, known := ws.covered[ns.Inode]
		if !known {
			var err error
			if cov, err = ws.covers(&ns); err != nil {
				s.log.Debug("cannot tell whether the walk covers a namespace; dumping it", "netns", ns.Name, "err", err)
				dump = append(dump, i)
				continue
			}
			ws.covered[ns.Inode] = cov
			if !cov {
				s.log.Info("network namespace has TCP tables of its own (tcp_child_ehash_entries); dumping it with sock_diag", "netns", ns.Name)
			}
		}
		if !cov {
			dump = append(dump, i)
			continue
		}
		walkIdx[ns.Inode] = i
	}
	for _, m := range []map[uint64]bool{ws.primed, ws.covered} {
		for ino := range m {
			if !inTodo[ino] {
				delete(m, ino)
			}
		}
	}

	if len(walkIdx) > 0 {
		dump = append(dump, s.deliverWalk(ctx, ws, todo, walkIdx, results, states, fn)...)
	}
	s.dumpEntries(ctx, todo, dump, results, states, fn)
	for _, i := range dump {
		if results[i].Err == nil {
			ws.primed[results[i].Inode] = true
		}
	}
	return results
}

// walkTarget is one namespace a walk delivers.
type walkTarget struct {
	i        int // index in todo
	ns       Namespace
	r        NamespaceResult
	noCookie bool
}

// deliverWalk walks once and passes the sockets of the namespaces in
// walkIdx to fn as the walk finds them (namespaces interleaved, in the
// kernel's hash order). It returns the indexes (in todo) of the namespaces
// that must be dumped instead: all of them when the walk failed before
// delivering anything. A socket without a cookie is left out and its
// namespace is dumped at the next scan, which gives it one.
func (s *Scanner) deliverWalk(ctx context.Context, ws *walkState, todo []*nsEntry, walkIdx map[uint64]int, results []NamespaceResult, states StateMask, fn func(ns *Namespace, sk *Socket) error) (redo []int) {
	start := time.Now()
	targets := make(map[uint64]*walkTarget, len(walkIdx))
	want := make([]uint64, 0, len(walkIdx))
	for ino, i := range walkIdx {
		e := todo[i]
		e.mu.Lock()
		s.refreshSysctlsLocked(e, start)
		ns := e.ns
		ns.TCP = e.tcp
		e.mu.Unlock()
		targets[ino] = &walkTarget{i: i, ns: ns, r: NamespaceResult{Namespace: ns, Source: SourceWalk}}
		want = append(want, ino)
	}
	hz := ws.w.HZ()
	var sk Socket
	n, err := ws.w.Walk(ctx, want, func(rec *bpfwalk.Record) error {
		t := targets[uint64(rec.Netns)]
		if t == nil || t.r.Err != nil {
			return nil
		}
		if needsCookie(rec.Cookie, rec.State, rec.Flags) {
			t.noCookie = true
			return nil
		}
		if err := socketFromRecord(rec, hz, &sk); err != nil {
			t.r.Err = fmt.Errorf("inventory: walk netns %s: %w", t.ns.Name, err)
			return nil
		}
		if states&sk.State.Mask() == 0 {
			return nil
		}
		t.r.Sockets++
		if err := fn(&t.ns, &sk); err != nil {
			t.r.Err = fmt.Errorf("inventory: walk netns %s: %w", t.ns.Name, err)
		}
		return nil
	})
	if msg := errString(err); msg != ws.errMsg {
		ws.errMsg = msg
		if err != nil && n == 0 {
			s.log.Warn("one-walk socket listing failed; dumping every namespace with sock_diag this scan", "err", err)
		} else if err != nil {
			s.log.Warn("one-walk socket listing failed part way; the walked namespaces carry the error this scan", "err", err)
		} else {
			s.log.Info("one-walk socket listing works again")
		}
	}
	if err != nil && n == 0 && ctx.Err() == nil {
		for _, t := range targets {
			redo = append(redo, t.i)
		}
		return redo
	}
	took := time.Since(start)
	for ino, t := range targets {
		if err != nil && t.r.Err == nil {
			t.r.Err = fmt.Errorf("inventory: walk: %w", err)
		}
		if t.noCookie {
			ws.primed[ino] = false
			s.log.Debug("walked namespace has sockets without cookies; dumping it next scan", "netns", t.ns.Name)
		}
		t.r.Duration = took
		e := todo[t.i]
		e.mu.Lock()
		s.noteNamespaceErr(e, t.r.Err)
		e.mu.Unlock()
		results[t.i] = t.r
	}
	return nil
}

// walkOpener opens the one-walk source.
type walkOpener func() (oneWalker, func(*Namespace) (bool, error), error)

// loadWalk loads the one-walk source with open (nil: bpfwalk), or logs
// once why not.
func loadWalk(log *slog.Logger, open walkOpener) *walkState {
	if open == nil {
		open = newOneWalker
	}
	w, covers, err := open()
	if err != nil {
		log.Warn("listing sockets with one sock_diag dump per namespace: the one-walk BPF source cannot load", "source", SourceSockDiag, "err", err)
		return nil
	}
	log.Info("listing sockets with one BPF walk of the kernel's TCP tables for every namespace", "source", SourceWalk, "variant", w.Variant())
	return newWalkState(w, covers)
}
