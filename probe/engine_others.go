//go:build !linux

package probe

// openRawConn has no raw sockets to open outside Linux.
func openRawConn(string, []uint16) (rawConn, error) { return nil, ErrUnsupported }
