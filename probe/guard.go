package probe

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// This file is the reset guard (Config.ResetGuard): while a probe is
// outstanding, a netfilter rule in the socket's namespace drops the RST that
// answers exactly that probe (the 4-tuple reversed, sequence number = the
// probe's ACK number) in prerouting, before conntrack and before the socket.
// The packet capture taps frames before netfilter, so ghostd still sees the
// RST. Probes can then acknowledge RCV.NXT: a peer that lost the connection
// answers a RST that a strict conntrack middlebox lets through (its sequence
// number is in the window the middlebox tracks), and the local socket,
// which would accept it, never sees it.
//
// The rules live in ghostd's own nftables table, `inet ghostd`, one per
// namespace, created with the owner flag (NFT_TABLE_F_OWNER, Linux 5.12+):
// the kernel deletes it when the netlink socket that made it closes, so it
// cannot outlive ghostd, not even a SIGKILL. The table is made when a
// namespace's probes start and removed guardTableLinger after they end;
// each probe's element carries a timeout a little longer than the probe,
// and is deleted guardLinger after the probe ends. guard_nft.go builds the messages, guard_linux.go sends them.

// ErrGuardUnsupported is returned where the reset guard cannot work (not Linux).
var ErrGuardUnsupported = errors.New("probe: reset guard needs Linux nftables")

// GuardTable is the name of ghostd's nftables table (family inet).
const GuardTable = "ghostd"

// resetGuard drops, in one namespace, RSTs that answer guarded probes.
type resetGuard interface {
	// add drops RSTs from remote to local with sequence number seq for ttl.
	add(local, remote netip.AddrPort, seq uint32, ttl time.Duration) error
	// remove stops dropping them.
	remove(local, remote netip.AddrPort, seq uint32) error
	// close removes the table.
	close() error
}

// guardPool holds one reset guard per namespace while that namespace's
// probes run (ProbeAll calls may overlap: the probe loop and a kill's
// re-confirmation), and for guardTableLinger after, so that the next probe
// round reuses it.
type guardPool struct {
	mu     sync.Mutex
	open   func(nsPath string) (resetGuard, error) // nil: openGuard
	linger time.Duration                           // the table's linger; 0: guardTableLinger
	ns     map[uint64]*guardRef
	warned bool // an open failure was logged
	failed bool // an element failure was logged
}

type guardRef struct {
	g       resetGuard
	users   int
	gen     int       // bumped at every release, so a stale close timer does nothing
	settled time.Time // when unused: when its elements' linger ends
}

// guardLinger is how long an element stays after its probe ended: a RST
// answering an earlier attempt may still be on its way when a later one's
// answer ended the probe, and it must not reach the local socket either.
const guardLinger = 3 * time.Second

// guardTableLinger is how long a namespace's table stays after its last
// probe, so that chunks and rounds of probes reuse it: making and removing
// one costs about 30 ms (BenchmarkResetGuard). Its set is empty by then, so
// it drops nothing; its netlink socket keeps the namespace alive that long.
const guardTableLinger = 30 * time.Second

// hold opens the namespace's guard (unless it is open) for the probes about
// to run there when on, and returns what to call when they are done. A
// guard that cannot be opened is said once in the log (then at debug
// level); the namespace's probes then acknowledge RCV.NXT−1 as without it.
func (gp *guardPool) hold(on bool, inode uint64, nsPath string, log *slog.Logger) func() {
	if !on {
		return func() {}
	}
	ref := gp.take(inode)
	if ref == nil {
		// Opened without the pool's lock: namespaces open theirs at once.
		open := gp.open
		if open == nil {
			open = openGuard
		}
		g, err := open(nsPath)
		if err != nil {
			gp.mu.Lock()
			first := !gp.warned
			gp.warned = true
			gp.mu.Unlock()
			if first {
				log.Warn("probe: reset guard unavailable; probes acknowledge RCV.NXT-1 and a strict firewall may hide resets", "netns_inode", inode, "err", err)
			} else {
				log.Debug("probe: reset guard unavailable", "netns_inode", inode, "err", err)
			}
			return func() {}
		}
		gp.mu.Lock()
		if gp.ns == nil {
			gp.ns = make(map[uint64]*guardRef)
		}
		if other := gp.ns[inode]; other != nil {
			// Another ProbeAll opened one meanwhile: only one may own the table.
			_ = g.close()
			ref = other
		} else {
			ref = &guardRef{g: &countedGuard{resetGuard: g, n: make(map[string]int)}}
			gp.ns[inode] = ref
		}
		ref.users++
		gp.mu.Unlock()
	}
	return func() {
		gp.mu.Lock()
		defer gp.mu.Unlock()
		if ref.users--; ref.users > 0 {
			return
		}
		ref.gen++
		gen := ref.gen
		ref.settled = time.Now().Add(guardLinger)
		linger := gp.linger
		if linger <= 0 {
			linger = guardTableLinger
		}
		time.AfterFunc(linger, func() {
			gp.mu.Lock()
			defer gp.mu.Unlock()
			if ref.users == 0 && ref.gen == gen && gp.ns[inode] == ref {
				delete(gp.ns, inode)
				if err := ref.g.close(); err != nil {
					log.Warn("probe: close reset guard", "netns_inode", inode, "err", err)
				}
			}
		})
	}
}

// take returns the namespace's open guard with one more user, nil when
// there is none.
func (gp *guardPool) take(inode uint64) *guardRef {
	gp.mu.Lock()
	defer gp.mu.Unlock()
	ref := gp.ns[inode]
	if ref != nil {
		ref.users++
	}
	return ref
}

// get returns the namespace's open guard, nil when there is none.
func (gp *guardPool) get(inode uint64) resetGuard {
	gp.mu.Lock()
	defer gp.mu.Unlock()
	if ref := gp.ns[inode]; ref != nil {
		return ref.g
	}
	return nil
}

// closeAll waits for the elements' lingers to end (at most guardLinger),
// then closes every guard: the tables go with them.
func (gp *guardPool) closeAll() {
	gp.mu.Lock()
	var until time.Time
	for _, ref := range gp.ns {
		if ref.settled.After(until) {
			until = ref.settled
		}
	}
	gp.mu.Unlock()
	time.Sleep(time.Until(until))
	gp.mu.Lock()
	defer gp.mu.Unlock()
	for inode, ref := range gp.ns {
		delete(gp.ns, inode)
		_ = ref.g.close()
	}
}

// guardTTL is how long a probe's element may live: every attempt and the
// final wait, with 20 % jitter, the linger, and slack. The probe deletes it
// guardLinger after it ends.
func guardTTL(cfg *Config) time.Duration {
	return time.Duration(cfg.Attempts)*cfg.Interval*6/5 + cfg.Timeout + guardLinger + 2*time.Second
}

// arm puts up the guard for one in-window probe of t and returns the
// function that takes it down; ok is false (and nothing is armed) when the
// probe must stay unguarded: the guard is off or unavailable, the probe is
// blind, or the connection is NATed in its namespace (its RST arrives with
// translated addresses, which the element would not match).
func (p *Prober) arm(cfg *Config, t Target, st *SeqState, nat string) (disarm func(), ok bool) {
	if !cfg.ResetGuard || st == nil || nat != "" {
		return nil, false
	}
	g := p.guards.get(t.NetnsInode)
	if g == nil {
		return nil, false
	}
	local := netip.AddrPortFrom(t.Local.Addr().Unmap(), t.Local.Port())
	remote := netip.AddrPortFrom(t.Remote.Addr().Unmap(), t.Remote.Port())
	if err := g.add(local, remote, st.RcvNxt, guardTTL(cfg)); err != nil {
		if p.guards.drop(t.NetnsInode, g) {
			p.log.Warn("probe: reset guard: add element failed; the namespace's guard is reopened next round, its probes go unguarded until then", "local", local, "remote", remote, "err", err)
		} else {
			p.log.Debug("probe: reset guard: add element", "local", local, "remote", remote, "err", err)
		}
		return nil, false
	}
	seq := st.RcvNxt
	return func() {
		time.AfterFunc(guardLinger, func() {
			if err := g.remove(local, remote, seq); err != nil {
				p.log.Debug("probe: reset guard: remove element (it times out on its own)", "local", local, "remote", remote, "err", err)
			}
		})
	}, true
}

// drop closes a namespace's guard that failed (its socket may be broken)
// and forgets it, so that the next probes there open a new one; it reports
// whether this is the pool's first such failure, to be logged.
func (gp *guardPool) drop(inode uint64, g resetGuard) bool {
	gp.mu.Lock()
	defer gp.mu.Unlock()
	if ref := gp.ns[inode]; ref != nil && ref.g == g {
		delete(gp.ns, inode)
		_ = g.close()
	}
	first := !gp.failed
	gp.failed = true
	return first
}

// countedGuard counts the probes that need each element: the probe loop
// and a kill's re-confirmation may probe one socket at once, and the first
// to end must not take the other's element away.
type countedGuard struct {
	resetGuard
	mu sync.Mutex // held across the netlink calls, so they keep the counts' order
	n  map[string]int
}

func (c *countedGuard) add(local, remote netip.AddrPort, seq uint32, ttl time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Added again when present: a kernel that updates element timeouts
	// extends it to the later probe's.
	if err := c.resetGuard.add(local, remote, seq, ttl); err != nil {
		return err
	}
	c.n[string(guardKey(local, remote, seq))]++
	return nil
}

func (c *countedGuard) remove(local, remote netip.AddrPort, seq uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := string(guardKey(local, remote, seq))
	if c.n[k]--; c.n[k] > 0 {
		return nil
	}
	delete(c.n, k)
	return c.resetGuard.remove(local, remote, seq)
}

// errGuard wraps a guard failure.
func errGuard(what string, err error) error {
	return fmt.Errorf("probe: reset guard: %s: %w", what, err)
}
