package bpfwalk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/ghostd/ghostd/internal/closer"
	"github.com/ghostd/ghostd/internal/kernelhz"
)

// ErrUnavailable is wrapped by New when the kernel or the process's
// privileges do not allow the walk (no BTF, a kernel whose socket tables or
// BPF helpers do not fit, missing CAP_BPF and CAP_PERFMON, a verifier
// rejection, not Linux). Callers then list sockets with sock_diag, namespace
// by namespace.
var ErrUnavailable = errors.New("bpfwalk: one-walk socket listing unavailable")

// ErrIncomplete is wrapped by Walk when the pass may have missed sockets: a
// hash chain longer than the program follows, or records the ring buffer
// refused. It comes after fn saw what the pass found.
var ErrIncomplete = errors.New("bpfwalk: walk incomplete")

// Variants of the walk, as Walker.Variant reports them.
const (
	VariantCast = "rdonly_cast"
	VariantCopy = "probe_read"
)

// Walker lists the TCP sockets of every network namespace that shares the
// kernel's TCP hash tables with the namespace New was called in, in one pass
// over those tables. From New on, every TCP socket that changes state (a
// connect, a listen, an accept) gets a socket cookie, its identity; sockets
// older than that have one only if something (a sock_diag dump, SO_COOKIE)
// gave them one, and are listed with cookie 0 otherwise. Its methods are
// safe for concurrent use; passes are serialised.
type Walker struct {
	mu      sync.Mutex
	impl    *impl // nil once closed
	hz      int
	variant string
	r       Record // scratch for decoding
}

// New loads the programs, attaches the cookie hook and records the socket
// tables of the calling thread's network namespace as the ones to walk.
// When the walk cannot run here the error wraps ErrUnavailable and says why
// in one line.
func New() (*Walker, error) { return newWalker("") }

// newWalker loads the given variant ("": the best one the kernel allows).
func newWalker(variant string) (*Walker, error) {
	hz, err := kernelhz.HZ()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	im, err := newImpl(variant)
	if err != nil {
		return nil, err
	}
	return &Walker{impl: im, hz: hz, variant: im.variant}, nil
}

// Variant says how the walk reads sockets: VariantCast, through
// bpf_rdonly_cast (Linux 6.2+), or VariantCopy, copying each socket out
// whole with bpf_probe_read_kernel (older kernels).
func (w *Walker) Variant() string { return w.variant }

// HZ returns the kernel's jiffies per second, which Record times count in.
func (w *Walker) HZ() int { return w.hz }

// Covers reports whether the network namespace of nsFD (an open
// /proc/PID/ns/net or /run/netns file; -1: the caller's own) keeps its TCP
// sockets in the tables Walk walks. A namespace created while
// net.ipv4.tcp_child_ehash_entries was set has tables of its own.
func (w *Walker) Covers(nsFD int) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.impl == nil {
		return false, fmt.Errorf("bpfwalk: covers: %w", os.ErrClosed)
	}
	ok, err := w.impl.covers(nsFD)
	if err != nil {
		return false, fmt.Errorf("bpfwalk: covers: %w", err)
	}
	return ok, nil
}

// Walk makes one pass and calls fn for every socket of the namespaces whose
// inodes are in netns (every namespace when netns is empty), with a *Record
// reused for the next one. The pass visits every socket in the tables
// either way, but copies out only those, a ring buffer at a time: memory
// stays flat however many sockets there are. An error from fn ends the walk
// and is returned as is. An error wrapping ErrIncomplete comes after fn saw
// what the pass found.
func (w *Walker) Walk(ctx context.Context, netns []uint64, fn func(*Record) error) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.impl == nil {
		return 0, fmt.Errorf("bpfwalk: walk: %w", os.ErrClosed)
	}
	n, err := w.impl.walk(ctx, netns, func(b []byte) error {
		if err := w.r.Decode(b); err != nil {
			return err
		}
		return fn(&w.r)
	})
	if err != nil {
		return n, fmt.Errorf("bpfwalk: walk: %w", err)
	}
	return n, nil
}

// Close detaches and unloads the programs.
func (w *Walker) Close() error {
	return closer.Close(&w.mu, &w.impl, (*impl).close)
}
