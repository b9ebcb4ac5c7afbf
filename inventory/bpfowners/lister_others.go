//go:build !linux

package bpfowners

import (
	"context"
	"fmt"
)

type impl struct{}

func newImpl() (*impl, error) { return nil, fmt.Errorf("%w: BPF needs Linux", ErrUnavailable) }

func (*impl) each(context.Context, func([]byte) bool) error { return ErrUnavailable }
func (*impl) close() error                                  { return nil }
