package bpfowners

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/ghostd/ghostd/internal/closer"
)

// ErrUnavailable is wrapped by New when the iterator cannot run here: no
// BTF, a kernel without the task_file iterator or bpf_sock_from_file (5.11+),
// missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), a verifier rejection, a
// pid namespace other than the initial one, or not Linux. Callers then read
// /proc/PID/fd.
var ErrUnavailable = errors.New("bpfowners: BPF task_file iterator unavailable")

// FD is one socket file descriptor of a process.
type FD struct {
	PID   int    // the process: its thread group id
	FD    int    // the file descriptor number
	Inode uint64 // the socket's inode, as in /proc/PID/fd's "socket:[N]"
	// Netns is the inode of the process's network namespace, 0 when the
	// process was exiting.
	Netns uint64
}

// recordLen is the size of owners.c's struct fd_record.
const recordLen = 24

// decode reads one fd_record (native byte order).
func decode(b []byte) FD {
	return FD{
		Inode: binary.NativeEndian.Uint64(b[0:]),
		PID:   int(binary.NativeEndian.Uint32(b[8:])),
		FD:    int(binary.NativeEndian.Uint32(b[12:])),
		Netns: uint64(binary.NativeEndian.Uint32(b[16:])),
	}
}

// Lister lists the socket file descriptors of every process
// in one pass of a BPF task_file iterator: a process, its fd, the socket's
// inode and the process's network namespace. Processes are visited in
// ascending pid order and each one's fds in ascending order, as a walk of
// /proc would. Its methods are safe for concurrent use; passes are
// serialised.
type Lister struct {
	mu   sync.Mutex
	impl *impl // nil once closed
}

// New loads the iterator. When it cannot run here the error wraps
// ErrUnavailable and says why in one line.
func New() (*Lister, error) {
	im, err := newImpl()
	if err != nil {
		return nil, err
	}
	return &Lister{impl: im}, nil
}

// Each runs one pass and calls fn for every socket fd found, in pid
// order, until fn returns false: the rest of the pass is not run. A
// process that opens or closes sockets during the pass may be seen with
// some of them, as in a walk of /proc.
func (l *Lister) Each(ctx context.Context, fn func(FD) bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.impl == nil {
		return fmt.Errorf("bpfowners: each: %w", os.ErrClosed)
	}
	if err := l.impl.each(ctx, func(rec []byte) bool { return fn(decode(rec)) }); err != nil {
		return fmt.Errorf("bpfowners: each: %w", err)
	}
	return nil
}

// Close unloads the iterator.
func (l *Lister) Close() error {
	return closer.Close(&l.mu, &l.impl, (*impl).close)
}
