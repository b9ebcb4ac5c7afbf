package app

import "golang.org/x/sys/unix"

// CurrentCapabilities reads the process's effective capabilities with capget(2).
func CurrentCapabilities() Capabilities {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return Capabilities{}
	}
	return Capabilities{eff: uint64(data[0].Effective) | uint64(data[1].Effective)<<32, known: true}
}
