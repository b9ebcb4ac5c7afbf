package probe

import (
	"context"
	"errors"
)

// SeqState is a socket's sequence-space state read without touching the socket.
type SeqState struct {
	SndUna, SndNxt, RcvNxt uint32
	SndWnd, RcvWnd         uint32
	SndWScale, RcvWScale   uint8
	TSOK                   bool
	TSRecent, TSOffset     uint32
}

// SeqReader reads SeqState for the given cookies inside one network namespace (nsPath "" = the caller's own).
type SeqReader interface {
	ReadSeq(ctx context.Context, nsPath string, cookies []uint64) (map[uint64]SeqState, error)
}

// ErrNoSeq is wrapped by readers that cannot work here (no BTF, no CAP_BPF, old kernel).
var ErrNoSeq = errors.New("probe: sequence numbers unavailable")
