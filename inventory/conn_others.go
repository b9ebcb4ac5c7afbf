//go:build !linux

package inventory

// Dial fails: sock_diag exists only on Linux.
func Dial(nsFD int) (*Conn, error) { return nil, ErrNotLinux }

// DialPath fails: sock_diag exists only on Linux.
func DialPath(path string) (*Conn, error) { return nil, ErrNotLinux }
