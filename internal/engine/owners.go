package engine

import (
	"time"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/tracker"
)

// ownerRetry is how long a socket whose owner was not found waits before
// its owner is looked for again.
const ownerRetry = time.Minute

// ownerRetryDueLocked reports whether some owner miss is due for another look.
func (e *Engine) ownerRetryDueLocked(now time.Time) bool {
	for _, at := range e.ownerMiss {
		if !now.Before(at) {
			return true
		}
	}
	return false
}

// resolveOwners resolves the owners of reported sockets not asked about
// before, and of those whose owner was not found last time once ownerRetry
// has passed. Unless always, it does so only when some socket became a
// suspect since the last look or a miss is due: 200 000 cache lookups per
// scan otherwise. The inodes are picked and the answers stored under the
// engine's lock; the walk over /proc runs without it, so scans, probes and
// views do not wait for it.
func (e *Engine) resolveOwners(always bool) {
	e.mu.Lock()
	now := e.opts.Now()
	newSuspects := e.tracker.NewSuspects()
	if !always && !e.opts.namesAll() && newSuspects == e.ownersSeen && !e.ownerRetryDueLocked(now) {
		e.mu.Unlock()
		return
	}
	e.ownersSeen = newSuspects
	var want []uint32
	reported := 0
	// When every socket to resolve lives in one namespace (scan --netns,
	// or new suspects in one container), the walk reads that namespace's
	// processes first: a container's sockets are then found without
	// reading every fd on the host.
	var netns uint64
	mixed := false
	e.eachInodeLocked(func(ns uint64, inode uint32) {
		reported++
		if inode == 0 {
			return
		}
		if _, ok := e.ownerOf[inode]; ok {
			if at, missed := e.ownerMiss[inode]; !missed || now.Before(at) {
				return
			}
		}
		want = append(want, inode)
		if netns == 0 {
			netns = ns
		}
		mixed = mixed || ns != netns
	})
	if mixed {
		netns = 0
	}
	e.mu.Unlock()
	if e.owners != nil && len(want) > 0 {
		// Each answer is stored as it comes, in the cache's compact form:
		// 200 000 of them (scan --all) are never held in a second map.
		if len(e.ownerOf) == 0 {
			// The first lookup (every lookup of a one-shot scan): one
			// allocation instead of growing through 200 000 inserts.
			e.mu.Lock()
			e.ownerOf = make(map[uint32]uint32, len(want))
			e.mu.Unlock()
		}
		// Answers come a process at a time: the owner's reference is
		// looked up once per run of one owner, not per socket.
		var last inventory.Owner
		lastRef := uint32(0)
		e.owners.Each(netns, want, func(ino uint32, o inventory.Owner) {
			e.mu.Lock()
			if lastRef == 0 || o != last {
				last, lastRef = o, e.ownerRef(o)
			}
			if lastRef != 0 {
				e.ownerOf[ino] = lastRef
				delete(e.ownerMiss, ino)
			}
			e.mu.Unlock()
		})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.owners != nil {
		// Misses are cached for ownerRetry: a socket nobody holds
		// (orphaned) must not cost a /proc walk at every scan, but an
		// owner found later must not be missed.
		retry := e.opts.Now().Add(ownerRetry)
		for _, ino := range want {
			if e.ownerOf[ino] == 0 {
				e.ownerOf[ino] = 0
				e.ownerMiss[ino] = retry
			}
		}
	}
	e.pruneOwnersLocked(reported)
}

// namesAll reports whether every listed socket's owner is named, not only
// the suspects'.
func (o *Options) namesAll() bool { return o.All && o.Processes }

// eachInodeLocked calls fn with the namespace and inode of every session
// whose owner is named: every suspect, or every listed socket with
// Options.Processes.
func (e *Engine) eachInodeLocked(fn func(netns uint64, inode uint32)) {
	if !e.opts.namesAll() {
		e.tracker.EachSuspectBrief(func(b *tracker.Brief) { fn(b.Key.Netns, b.Inode) })
		return
	}
	for i := range e.all.len() {
		l := e.all.at(i)
		fn(l.netns, l.inode)
	}
}

// pruneOwnersLocked keeps the owner cache to the inodes still reported once
// it holds more than twice as many.
func (e *Engine) pruneOwnersLocked(reported int) {
	if len(e.ownerOf) <= 2*reported+1024 {
		return
	}
	old, oldTab, oldMiss := e.ownerOf, e.ownerTab, e.ownerMiss
	e.ownerOf, e.ownerTab, e.ownerIdx = make(map[uint32]uint32, reported), nil, make(map[inventory.Owner]uint32)
	e.ownerMiss = make(map[uint32]time.Time)
	e.eachBriefLocked(func(b *tracker.Brief) {
		if ref, ok := old[b.Inode]; ok {
			o := inventory.Owner{}
			if ref > 0 {
				o = oldTab[ref-1]
			}
			e.ownerOf[b.Inode] = e.ownerRef(o)
			if at, missed := oldMiss[b.Inode]; missed {
				e.ownerMiss[b.Inode] = at
			}
		}
	})
}

// ownerRef returns o's index in ownerTab plus one (0 for nobody), adding it.
func (e *Engine) ownerRef(o inventory.Owner) uint32 {
	if o == (inventory.Owner{}) {
		return 0
	}
	ref, ok := e.ownerIdx[o]
	if !ok {
		e.ownerTab = append(e.ownerTab, o)
		ref = uint32(len(e.ownerTab))
		e.ownerIdx[o] = ref
	}
	return ref
}

func (e *Engine) owner(inode uint32) inventory.Owner {
	if ref := e.ownerOf[inode]; ref > 0 {
		return e.ownerTab[ref-1]
	}
	return inventory.Owner{}
}
