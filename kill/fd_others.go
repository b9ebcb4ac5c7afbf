//go:build !linux

package kill

import "errors"

// errUnsupported is returned by every fd action off Linux.
var errUnsupported = errors.New("kill: ending connections needs Linux")

type pidfdOps struct{}

func (pidfdOps) keepalive(int, uint32, uint64, *Policy) error { return errUnsupported }
func (pidfdOps) shutdownWrite(int, uint32, uint64) error      { return errUnsupported }
