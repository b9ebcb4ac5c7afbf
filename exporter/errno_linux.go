package exporter

import (
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// errnoName returns the errno's name (e.g. "ENOENT") for the kill_errors_total
// label, or "other" when err carries no errno.
func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
		return "errno_" + strconv.Itoa(int(errno))
	}
	return "other"
}
