package kernelhz

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// HZ returns the running kernel's CONFIG_HZ, asked once.
var HZ = sync.OnceValues(read)

// read asks the kernel itself, unprivileged and without a kernel config
// file: a socket timeout of 1 µs is rounded up to one jiffy
// (sock_set_timeout in net/core/sock.c), and reading it back yields 1e6/HZ
// microseconds (sock_get_timeout).
func read() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("kernelhz: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 1}); err != nil {
		return 0, fmt.Errorf("kernelhz: %w", os.NewSyscallError("setsockopt", err))
	}
	tv, err := unix.GetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO)
	if err != nil {
		return 0, fmt.Errorf("kernelhz: %w", os.NewSyscallError("getsockopt", err))
	}
	// Timeval's fields are int32 on 32-bit platforms.
	return FromTick(int64(tv.Sec), int64(tv.Usec))
}
