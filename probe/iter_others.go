//go:build !linux

package probe

import (
	"context"
	"fmt"
)

type iterImpl struct{}

func newIterImpl(string) (*iterImpl, error) {
	return nil, fmt.Errorf("%w: BPF socket iterators need Linux", ErrNoSeq)
}

func (*iterImpl) pass(context.Context, string, []uint64) ([]byte, error) { return nil, ErrNoSeq }

func (*iterImpl) close() error { return nil }

func checkIter(string) error {
	return fmt.Errorf("%w: BPF socket iterators need Linux", ErrNoSeq)
}
