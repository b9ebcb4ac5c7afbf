package tracker

import (
	"cmp"
	"slices"
)

// Test helpers: whole Entries of every suspect, which the daemon never needs
// (it walks Briefs, see EachSuspectBrief).

// suspects returns the remembered sockets that have at least one reason,
// sorted by namespace inode, then cookie.
func (t *Tracker) suspects() []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Entry
	for netns, ns := range t.nss {
		for _, c := range ns.chunks {
			for i := range c {
				if e := &c[i]; !e.reasons.Empty() {
					out = append(out, Entry{})
					t.fill(&out[len(out)-1], netns, ns, e)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if a.Socket.Netns != b.Socket.Netns {
			return cmp.Compare(a.Socket.Netns, b.Socket.Netns)
		}
		return cmp.Compare(a.Socket.Cookie, b.Socket.Cookie)
	})
	return out
}

// eachEntry calls fn for every remembered socket that has at least one
// reason, in no particular order, without allocating per socket: the daemon's
// per-scan path over hosts with hundreds of thousands of idle suspects. The
// tracker stores sockets compactly and rebuilds each Entry into one variable
// that every call of fn reuses: the pointer is valid only until fn returns
// (copy the Entry, or what fn needs of it, to keep it). Changing the Entry
// changes nothing in the tracker. fn must not call the tracker.
func (t *Tracker) eachEntry(fn func(*Entry)) {
	var ent Entry
	t.eachSuspect(func(netns uint64, ns *namespace, e *entry) {
		t.fill(&ent, netns, ns, e)
		fn(&ent)
	})
}
