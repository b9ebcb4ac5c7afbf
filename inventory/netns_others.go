//go:build !linux

package inventory

// nsInode fails where there are no Linux network namespaces.
func nsInode(path string) (uint64, error) {
	return 0, ErrNotLinux
}
