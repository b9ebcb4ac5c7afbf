//go:build !linux

package probe

import (
	"errors"
	"time"
)

// errUnsupported is why nothing is probed where raw probe sockets do not
// exist (non-Linux); the prober's errors wrap it.
var errUnsupported = errors.New("raw probes are not supported on this platform")

// openRawConn has no raw sockets to open outside Linux.
func openRawConn(string, []uint16) (rawConn, error) { return nil, errUnsupported }

// monotonic has no kernel TCP clock to read outside Linux.
func monotonic() (time.Duration, error) { return 0, errUnsupported }

// pinNetns has nothing to pin where there are no network namespaces.
func pinNetns(nsPath string, want uint64) (string, func(), error) {
	return nsPath, func() {}, nil
}
