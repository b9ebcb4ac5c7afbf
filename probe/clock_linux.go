package probe

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// kernelHZ is the running kernel's CONFIG_HZ, read once.
var kernelHZ = sync.OnceValues(readKernelHZ)

// readKernelHZ returns the running kernel's CONFIG_HZ: how many jiffies make
// a second, the unit of the keepalive times in tcp_sock. It asks the kernel
// itself, unprivileged and without a kernel config file: a socket timeout of
// 1 µs is rounded up to one jiffy (sock_set_timeout in net/core/sock.c), and
// reading it back yields 1e6/HZ microseconds (sock_get_timeout).
func readKernelHZ() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("kernel HZ: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 1}); err != nil {
		return 0, fmt.Errorf("kernel HZ: %w", os.NewSyscallError("setsockopt", err))
	}
	tv, err := unix.GetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO)
	if err != nil {
		return 0, fmt.Errorf("kernel HZ: %w", os.NewSyscallError("getsockopt", err))
	}
	return hzFromTick(tv.Sec, int64(tv.Usec))
}
