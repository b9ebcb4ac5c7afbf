package podinfo

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// nsInode returns the inode of the network namespace at path: a bind-mounted
// namespace file or /proc/PID/ns/net. A path that is not on nsfs (the empty
// file a namespace leaves behind when it is unmounted) is an error, so that
// its inode is never taken for a namespace's.
func nsInode(path string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, fmt.Errorf("podinfo: %s: %w", path, err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		return 0, fmt.Errorf("podinfo: %s is not a namespace", path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("podinfo: %s: %w", path, err)
	}
	return st.Ino, nil
}
