package pathidle

import (
	"cmp"
	"container/list"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ghostd/ghostd/internal/positive"
)

// Dest is a destination as a path sees it: the peer's /24 (IPv4) or /64
// (IPv6) and the service port. Connections to one service behind one NAT
// gateway or load balancer share it, and so do the connections one service
// of this host accepted from clients behind one: for those the service port
// is the local one, as the clients' ports are ephemeral, one per connection.
type Dest struct {
	Prefix netip.Prefix
	Port   uint16
	// Dir says whose port Port is: the peer's (Outbound) or ours (Inbound).
	Dir Direction
}

// Direction is which end of a connection listened for it.
type Direction uint8

// Directions.
const (
	// Outbound: this host connected to the peer's port.
	Outbound Direction = iota
	// Inbound: the peer connected to a port this host listens on.
	Inbound
)

// String is "outbound" or "inbound".
func (d Direction) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// DestOf returns the destination of an outbound connection to remote
// (v4-mapped addresses count as IPv4).
func DestOf(remote netip.AddrPort) Dest {
	return Dest{Prefix: prefixOf(remote.Addr()), Port: remote.Port()}
}

// ClientsOf returns the destination of an inbound connection: the client's
// network, remote's /24 or /64, and the local port it connected to.
func ClientsOf(remote netip.AddrPort, localPort uint16) Dest {
	return Dest{Prefix: prefixOf(remote.Addr()), Port: localPort, Dir: Inbound}
}

// prefixOf is a's /24 (IPv4, v4-mapped included) or /64 (IPv6).
func prefixOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits) // cannot fail: bits fits both families
	return p
}

// String is "198.51.100.0/24:5432" or "[2001:db8::/64]:443" outbound, and
// "clients 198.51.100.0/24 → :5432" or "clients 2001:db8::/64 → :443"
// inbound.
func (d Dest) String() string {
	port := strconv.Itoa(int(d.Port))
	switch {
	case d.Dir == Inbound:
		return "clients " + d.Prefix.String() + " → :" + port
	case d.Prefix.Addr().Is6():
		return "[" + d.Prefix.String() + "]:" + port
	}
	return d.Prefix.String() + ":" + port
}

// Outcome is what a probe proved about a connection at its idle age.
type Outcome uint8

// Outcomes.
const (
	// Alive: the peer answered through the path, so the path still held
	// the flow at that idle age.
	Alive Outcome = iota
	// Dead: a confirmed ghost (silent, reset or unreachable): the flow was
	// gone at that idle age, whether the path or the peer lost it.
	Dead
)

// Sample is one probe outcome of an idle connection.
type Sample struct {
	Dest Dest
	// Idle is how long nothing had crossed the path (no data either way, no
	// ACK received) when the probe went out.
	Idle    time.Duration
	Outcome Outcome
	// Comm is the local owner's process name, "" when unknown: it picks the
	// keepalive advice.
	Comm string
}

// Config bounds a Table. Zero fields take DefaultConfig's values.
type Config struct {
	// MaxDests caps the destinations remembered; the one updated longest
	// ago goes first.
	MaxDests int
	// MaxSamples caps the samples kept per destination on each side
	// (alive, dead); the oldest go first.
	MaxSamples int
	// MaxAge drops samples older than this: paths change.
	MaxAge time.Duration
	// MinAlive and MinDead are how many samples each side needs before an
	// estimate is reported.
	MinAlive, MinDead int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig: 1024 destinations, 32 samples a side each (about 1.2 KiB
// per destination), kept for 24 hours; 2 alive and 2 dead samples at least.
func DefaultConfig() Config {
	return Config{MaxDests: 1024, MaxSamples: 32, MaxAge: 24 * time.Hour, MinAlive: 2, MinDead: 2}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.MaxDests = positive.Or(c.MaxDests, d.MaxDests)
	c.MaxSamples = positive.Or(c.MaxSamples, d.MaxSamples)
	c.MaxAge = positive.Or(c.MaxAge, d.MaxAge)
	c.MinAlive = positive.Or(c.MinAlive, d.MinAlive)
	c.MinDead = positive.Or(c.MinDead, d.MinDead)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// maxComms caps the owner names kept per destination.
const maxComms = 4

type point struct {
	idle time.Duration
	at   time.Time
}

type dest struct {
	alive, dead []point
	comms       []string
	// at is d's place in Table.order; its Value is d's key in Table.dests.
	at *list.Element
}

// Table collects samples and estimates each destination's idle timeout. Its
// methods are safe for concurrent use; memory is bounded by Config.
type Table struct {
	mu    sync.Mutex
	cfg   Config
	dests map[Dest]*dest
	// order lists the destinations' keys in update order, oldest first, so
	// that making room for a new one costs no pass over all of them: a
	// table at its cap (many peers, or accepted connections whose listener
	// was not seen, a destination each) takes a new one at every probe.
	order list.List
}

// New returns an empty Table.
func New(cfg Config) *Table {
	return &Table{cfg: cfg.withDefaults(), dests: make(map[Dest]*dest)}
}

// Add records one sample.
func (t *Table) Add(s Sample) {
	if s.Idle < 0 || !s.Dest.Prefix.IsValid() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	d := t.dests[s.Dest]
	if d == nil {
		if len(t.dests) >= t.cfg.MaxDests {
			t.removeLocked(t.dests[t.order.Front().Value.(Dest)])
		}
		d = &dest{at: t.order.PushBack(s.Dest)}
		t.dests[s.Dest] = d
	} else {
		t.order.MoveToBack(d.at)
	}
	p := point{idle: s.Idle, at: now}
	side := &d.alive
	if s.Outcome == Dead {
		side = &d.dead
	}
	if len(*side) >= t.cfg.MaxSamples {
		*side = slices.Delete(*side, 0, len(*side)-t.cfg.MaxSamples+1)
	}
	*side = append(*side, p)
	if s.Comm != "" && !slices.Contains(d.comms, s.Comm) {
		if len(d.comms) >= maxComms {
			d.comms = slices.Delete(d.comms, 0, 1)
		}
		d.comms = append(d.comms, s.Comm)
	}
}

// removeLocked forgets a destination.
func (t *Table) removeLocked(d *dest) {
	delete(t.dests, t.order.Remove(d.at).(Dest))
}

// Len returns how many destinations are remembered.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.dests)
}

// Estimate is what the samples of one destination say about its path.
type Estimate struct {
	Dest Dest
	// Alive and Dead count the samples on each side.
	Alive, Dead int
	// MaxAlive is the largest idle age proved alive, MinDead the smallest
	// confirmed dead (zero when that side is empty).
	MaxAlive, MinDead time.Duration
	// Ready is set when the samples bracket a timeout: enough of both
	// sides, and every alive age below every dead age. Then the path forgets
	// idle flows after more than Lower and at most Upper.
	Ready        bool
	Lower, Upper time.Duration
	// Why says why there is no estimate when Ready is false.
	Why string
	// Owners are the local owners' process names seen (at most 4).
	Owners []string
	// Keepalive is the recommended keepalive idle time (below Lower), and
	// Advice how to set it for each owner; both only when Ready.
	Keepalive Keepalive
	Advice    []Advice
}

// Evidence is the number of samples behind the estimate.
func (e *Estimate) Evidence() int { return e.Alive + e.Dead }

// Text says the estimate in one sentence.
func (e *Estimate) Text() string {
	if !e.Ready {
		return fmt.Sprintf("%s: no estimate (%s)", e.Dest, e.Why)
	}
	return fmt.Sprintf("%s: alive at %s idle (%d samples), dead from %s (%d): the path forgets idle flows after more than %s and at most %s; keep keepalive idle below %s, e.g. %s",
		e.Dest, secs(e.Lower), e.Alive, secs(e.Upper), e.Dead, secs(e.Lower), secs(e.Upper), secs(e.Lower), secs(e.Keepalive.Idle))
}

// secs formats a duration in seconds to a tenth: "16 s", "29.1 s".
func secs(d time.Duration) string {
	return strconv.FormatFloat(math.Round(d.Seconds()*10)/10, 'f', -1, 64) + " s"
}

// Estimates returns every destination's estimate, the best evidenced first
// (ready ones before the others, then by sample count, then by
// destination). Samples older than MaxAge are dropped on the way, and a
// destination left without samples is forgotten.
func (t *Table) Estimates() []Estimate {
	t.mu.Lock()
	defer t.mu.Unlock()
	cutoff := t.cfg.Now().Add(-t.cfg.MaxAge)
	// Ranked by an index into es, each destination's text made once: the
	// table holds up to MaxDests, and formatting two of them per comparison
	// made a scrape of the metrics cost more than the probes between two.
	var (
		es    = make([]Estimate, 0, len(t.dests))
		names = make([]string, 0, len(t.dests))
	)
	for k, d := range t.dests {
		d.alive = dropBefore(d.alive, cutoff)
		d.dead = dropBefore(d.dead, cutoff)
		if len(d.alive)+len(d.dead) == 0 {
			t.removeLocked(d)
			continue
		}
		es = append(es, t.estimate(k, d))
		names = append(names, k.String())
	}
	rank := make([]int, len(es))
	for i := range rank {
		rank[i] = i
	}
	slices.SortFunc(rank, func(i, j int) int {
		a, b := &es[i], &es[j]
		if a.Ready != b.Ready {
			if a.Ready {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(b.Evidence(), a.Evidence()); c != 0 {
			return c
		}
		return cmp.Compare(names[i], names[j])
	})
	out := make([]Estimate, len(es))
	for i, r := range rank {
		out[i] = es[r]
	}
	return out
}

// dropBefore removes the points taken before cutoff (points are in time order).
func dropBefore(ps []point, cutoff time.Time) []point {
	i := 0
	for i < len(ps) && ps[i].at.Before(cutoff) {
		i++
	}
	return slices.Delete(ps, 0, i)
}

func (t *Table) estimate(k Dest, d *dest) Estimate {
	e := Estimate{Dest: k, Alive: len(d.alive), Dead: len(d.dead), Owners: slices.Clone(d.comms)}
	for i, p := range d.alive {
		if i == 0 || p.idle > e.MaxAlive {
			e.MaxAlive = p.idle
		}
	}
	for i, p := range d.dead {
		if i == 0 || p.idle < e.MinDead {
			e.MinDead = p.idle
		}
	}
	switch {
	case e.Dead == 0:
		e.Why = "no connection confirmed dead yet"
	case e.Alive == 0:
		e.Why = "no connection proved alive yet"
	case e.MaxAlive >= e.MinDead:
		// A connection died younger than another lived: a peer that went
		// away, or several paths behind one destination; no single timeout.
		e.Why = fmt.Sprintf("alive and dead ages overlap: alive at %s idle, dead at %s", secs(e.MaxAlive), secs(e.MinDead))
	case e.Alive < t.cfg.MinAlive || e.Dead < t.cfg.MinDead:
		e.Why = fmt.Sprintf("not enough evidence: %d alive and %d dead samples, need %d and %d", e.Alive, e.Dead, t.cfg.MinAlive, t.cfg.MinDead)
	default:
		e.Ready, e.Lower, e.Upper = true, e.MaxAlive, e.MinDead
		e.Keepalive = Recommend(e.Lower)
		e.Advice = AdviceFor(e.Owners, e.Keepalive)
	}
	return e
}
