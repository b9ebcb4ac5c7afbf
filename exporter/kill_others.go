//go:build !linux

package exporter

import "errors"

// errUnsupported is returned by every kill action off Linux.
var errUnsupported = errors.New("exporter: killing connections needs Linux")

func errnoName(err error) string { return "other" }

type pidfdOps struct{}

func (pidfdOps) keepalive(int, uint32, *KillPolicy) error { return errUnsupported }
func (pidfdOps) shutdownWrite(int, uint32) error          { return errUnsupported }
