//go:build !linux

package podinfo

import "errors"

// nsInode reports that network namespaces exist only on Linux.
func nsInode(string) (uint64, error) {
	return 0, errors.New("podinfo: network namespaces are a Linux feature")
}
