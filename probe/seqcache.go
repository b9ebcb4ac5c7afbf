package probe

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"

	"github.com/ghostd/ghostd/internal/epoch"
)

// SeqCacheTTL is how long a sequence state read ahead stays usable.
const SeqCacheTTL = 10 * time.Minute

// MaxSeqCache bounds the sequence states read ahead and not yet used. A full
// cache stores nothing more: ReadAhead reads only for the room left, and
// ProbeAll reads the rest itself.
const MaxSeqCache = 1 << 18

// seqSweepEvery is how often ReadAhead drops expired states.
const seqSweepEvery = time.Minute

// seqCache holds sequence states read ahead of their probes, per namespace.
// Times are stamps from epoch (package epoch), which carries a monotonic
// reading, so a wall-clock step neither expires nor revives an entry.
type seqCache struct {
	mu        sync.Mutex
	epoch     epoch.Epoch
	ns        map[string]*nsSeqCache
	n         int // entries in every namespace, gone ones included
	max       int
	lastSweep epoch.Stamp
}

// nsSeqCache is one namespace's states. A socket the read did not find is
// remembered in gone: cookies are never reused, so it stays gone.
type nsSeqCache struct {
	states map[uint64]seqEntry
	gone   map[uint64]epoch.Stamp // read time
	peak   int                    // most entries held since the maps were made
}

// seqEntry is one socket's state and when the read that found it started.
type seqEntry struct {
	st     SeqState
	readAt epoch.Stamp // from seqCache.epoch
}

func newSeqCache(at time.Time) seqCache {
	return seqCache{epoch: epoch.New(at), ns: make(map[string]*nsSeqCache), max: MaxSeqCache}
}

// usable reports whether a state read at readAt may serve a probe of t at
// now: data last moved before the read started, and the read is recent.
func (c *seqCache) usable(readAt, now epoch.Stamp, t *Target) bool {
	if t.QuietSince.IsZero() || !c.epoch.Time(readAt).After(t.QuietSince) {
		return false
	}
	age := time.Duration(now - readAt)
	return age >= 0 && age <= SeqCacheTTL
}

// lookup finds t's entry; found is false when there is none.
func (c *seqCache) lookup(ns *nsSeqCache, t *Target) (e seqEntry, gone, found bool) {
	if ns == nil {
		return seqEntry{}, false, false
	}
	if e, ok := ns.states[t.Cookie]; ok {
		return e, false, true
	}
	if at, ok := ns.gone[t.Cookie]; ok {
		return seqEntry{readAt: at}, true, true
	}
	return seqEntry{}, false, false
}

func (c *seqCache) remove(path string, ns *nsSeqCache, cookie uint64) {
	if _, ok := ns.states[cookie]; ok {
		delete(ns.states, cookie)
		c.n--
	}
	if _, ok := ns.gone[cookie]; ok {
		delete(ns.gone, cookie)
		c.n--
	}
	if len(ns.states)+len(ns.gone) == 0 {
		delete(c.ns, path)
	}
}

// store caches what one read found, or that it found nothing (st nil),
// unless the cache is full.
func (c *seqCache) store(path string, cookie uint64, st *SeqState, readAt epoch.Stamp) bool {
	ns := c.ns[path]
	if ns == nil {
		ns = &nsSeqCache{states: make(map[uint64]seqEntry), gone: make(map[uint64]epoch.Stamp)}
		c.ns[path] = ns
	}
	_, had := ns.states[cookie]
	_, hadGone := ns.gone[cookie]
	if !had && !hadGone && c.n >= c.max {
		if len(ns.states)+len(ns.gone) == 0 {
			delete(c.ns, path)
		}
		return false
	}
	if had {
		delete(ns.states, cookie)
		c.n--
	}
	if hadGone {
		delete(ns.gone, cookie)
		c.n--
	}
	if st != nil {
		ns.states[cookie] = seqEntry{st: *st, readAt: readAt}
	} else {
		ns.gone[cookie] = readAt
	}
	c.n++
	ns.peak = max(ns.peak, len(ns.states)+len(ns.gone))
	return true
}

// sweep drops expired entries, and remakes a namespace's maps once they hold
// a quarter of their peak: Go maps never shrink.
func (c *seqCache) sweep(now epoch.Stamp) {
	c.lastSweep = now
	expired := func(readAt epoch.Stamp) bool {
		age := time.Duration(now - readAt)
		return age < 0 || age > SeqCacheTTL
	}
	for path, ns := range c.ns {
		for k, e := range ns.states {
			if expired(e.readAt) {
				delete(ns.states, k)
				c.n--
			}
		}
		for k, at := range ns.gone {
			if expired(at) {
				delete(ns.gone, k)
				c.n--
			}
		}
		switch held := len(ns.states) + len(ns.gone); {
		case held == 0:
			delete(c.ns, path)
		case ns.peak > 1024 && held < ns.peak/4:
			ns.states, ns.gone, ns.peak = maps.Clone(ns.states), maps.Clone(ns.gone), held
		}
	}
}

func (c *seqCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.ns)
	c.n = 0
}

// since is the injected clock's reading as a stamp from the cache's epoch.
func (p *Prober) since() epoch.Stamp { return p.cache.epoch.Stamp(p.now()) }

// reading reports whether sequence state is read at all: not blind, not closed.
func (p *Prober) reading() bool {
	if p.seq == nil || p.closed.Load() {
		return false
	}
	m, _ := p.Mode()
	return m != Blind
}

// Missing returns how many targets a ReadAhead would serve but that have no
// usable state read ahead: their QuietSince is known, and no state read
// after it and within SeqCacheTTL is cached. Targets with an unknown
// QuietSince are not counted: ProbeAll always reads them fresh. It is 0 in
// blind mode, and after Close: there is nothing to read.
func (p *Prober) Missing(targets []Target) int {
	if !p.reading() {
		return 0
	}
	now := p.since()
	c := &p.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	missing := 0
	for i := range targets {
		t := &targets[i]
		if t.QuietSince.IsZero() {
			continue
		}
		e, _, found := c.lookup(c.ns[t.NetnsPath], t)
		if !found || !c.usable(e.readAt, now, t) {
			missing++
		}
	}
	return missing
}

// ReadAhead reads the sequence state of every target with a known
// QuietSince and no usable state cached, with one SeqReader call per
// namespace (a target listed twice is asked for twice), and caches it for ProbeAll, which then makes no read for them.
// Each state is used by one probe, and expires after SeqCacheTTL. Sockets
// the read does not find are remembered as gone. It returns how many states
// it cached: 0 in blind mode, after Close, when ctx is done, when the reader
// fails (ProbeAll then reads by itself), or when the cache holds MaxSeqCache
// states already.
func (p *Prober) ReadAhead(ctx context.Context, targets []Target) int {
	if !p.reading() || ctx.Err() != nil {
		return 0
	}
	type nsWant struct {
		path    string
		inode   uint64 // the namespace the inventory saw at path
		cookies []uint64
	}
	var order []*nsWant
	byNS := make(map[string]*nsWant)

	now := p.since()
	c := &p.cache
	c.mu.Lock()
	if time.Duration(now-c.lastSweep) >= seqSweepEvery || now < c.lastSweep || c.n >= c.max {
		c.sweep(now)
	}
	room := c.max - c.n
	for i := range targets {
		if room <= 0 {
			break
		}
		t := &targets[i]
		if t.QuietSince.IsZero() {
			continue // no state could be used: ProbeAll reads it fresh
		}
		if e, _, found := c.lookup(c.ns[t.NetnsPath], t); found && c.usable(e.readAt, now, t) {
			continue
		}
		w := byNS[t.NetnsPath]
		if w == nil {
			w = &nsWant{path: t.NetnsPath, inode: t.NetnsInode}
			byNS[t.NetnsPath] = w
			order = append(order, w)
		}
		w.cookies = append(w.cookies, t.Cookie)
		room--
	}
	c.mu.Unlock()

	cached := 0
	for _, w := range order {
		if ctx.Err() != nil || !p.reading() {
			break
		}
		readAt := p.since() // before the pass: data that moved during it makes the state unusable
		pinned, release, err := p.pin(w.path, w.inode)
		var seqs map[uint64]SeqState
		if err == nil {
			seqs, err = p.safeReadSeq(ctx, pinned, w.cookies)
			release()
		}
		switch {
		case errors.Is(err, ErrNoSeq):
			p.goBlind(err)
			return 0
		case err != nil && ctx.Err() != nil:
			return cached
		case err != nil:
			p.log.Debug("probe: read ahead failed; probes will read this namespace themselves", "netns", w.path, "err", err)
			continue
		}
		c.mu.Lock()
		for _, cookie := range w.cookies {
			if st, ok := seqs[cookie]; ok {
				if c.store(w.path, cookie, &st, readAt) {
					cached++
				}
			} else {
				c.store(w.path, cookie, nil, readAt)
			}
		}
		c.mu.Unlock()
	}
	return cached
}

// takeCached splits a namespace's targets into those a read ahead served,
// whose entries it removes and returns by cookie, and the rest, which need
// a fresh read.
func (p *Prober) takeCached(ns string, targets []Target, idx []int) (known map[uint64]cachedSeq, rest []int) {
	if !p.reading() {
		return nil, idx
	}
	now := p.since()
	c := &p.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	nc := c.ns[ns]
	if nc == nil {
		return nil, idx
	}
	rest = make([]int, 0, len(idx))
	for _, i := range idx {
		t := &targets[i]
		if _, ok := known[t.Cookie]; ok {
			continue
		}
		e, gone, found := c.lookup(nc, t)
		if !found {
			rest = append(rest, i)
			continue
		}
		// Used or not, the entry is done: a later inventory's QuietSince is
		// never earlier, and expired entries stay expired.
		c.remove(ns, nc, t.Cookie)
		if !c.usable(e.readAt, now, t) {
			rest = append(rest, i)
			continue
		}
		if known == nil {
			known = make(map[uint64]cachedSeq)
		}
		known[t.Cookie] = cachedSeq{st: e.st, gone: gone}
	}
	return known, rest
}

// cachedSeq is a state taken from the cache for one probe.
type cachedSeq struct {
	st   SeqState
	gone bool
}
