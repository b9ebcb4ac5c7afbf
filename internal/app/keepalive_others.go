//go:build !linux

package app

// nsInodeOf finds no namespace where there are no Linux network namespaces.
func nsInodeOf(string) (uint64, bool) { return 0, false }
