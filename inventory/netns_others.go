//go:build !linux

package inventory

// nsInode fails where there are no Linux network namespaces.
func nsInode(path string) (uint64, error) {
	return 0, ErrNotLinux
}

// ownerUID cannot tell owners where there are no cgroups.
func ownerUID(path string) (uint32, bool) { return 0, false }
