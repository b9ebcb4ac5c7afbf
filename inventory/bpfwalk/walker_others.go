//go:build !linux

package bpfwalk

import (
	"context"
	"fmt"
)

type impl struct{ variant string }

func newImpl(string) (*impl, error) {
	return nil, fmt.Errorf("%w: BPF needs Linux", ErrUnavailable)
}

func (*impl) covers(int) (bool, error) { return false, ErrUnavailable }
func (*impl) walk(context.Context, []uint64, func([]byte) error) (int, error) {
	return 0, ErrUnavailable
}
func (*impl) close() error { return nil }
