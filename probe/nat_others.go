//go:build !linux

package probe

// lookupNAT has no conntrack to ask outside Linux.
func lookupNAT(string, []flowKey) ([]natFlow, error) { return nil, errNoConntrack }
