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
	if !always && !e.opts.All && newSuspects == e.ownersSeen && !e.ownerRetryDueLocked(now) {
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
	e.eachBriefLocked(func(b *tracker.Brief) {
		reported++
		if b.Inode == 0 {
			return
		}
		if _, ok := e.ownerOf[b.Inode]; ok {
			if at, missed := e.ownerMiss[b.Inode]; !missed || now.Before(at) {
				return
			}
		}
		want = append(want, b.Inode)
		if netns == 0 {
			netns = b.Key.Netns
		}
		mixed = mixed || b.Key.Netns != netns
	})
	if mixed {
		netns = 0
	}
	e.mu.Unlock()
	if e.owners != nil && len(want) > 0 {
		// Each answer is stored as it comes, in the cache's compact form:
		// 200 000 of them (scan --all) are never held in a second map.
		e.owners.Each(netns, want, func(ino uint32, o inventory.Owner) {
			e.mu.Lock()
			if ref := e.ownerRef(o); ref != 0 {
				e.ownerOf[ino] = ref
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
