//go:build !linux

package inventory

// ReadTCPSysctls needs Linux.
func ReadTCPSysctls(*Namespace) (TCPSysctls, error) { return TCPSysctls{}, ErrNotLinux }
