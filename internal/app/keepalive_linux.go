package app

import (
	"os"
	"syscall"
)

// nsInodeOf returns the inode of the namespace at nsPath ("" = the
// caller's own), as the inventory names namespaces.
func nsInodeOf(nsPath string) (uint64, bool) {
	if nsPath == "" {
		nsPath = "/proc/thread-self/ns/net"
	}
	fi, err := os.Stat(nsPath)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}
