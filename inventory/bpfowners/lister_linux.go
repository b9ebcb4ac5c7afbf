package bpfowners

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/bpfload"
)

// initPidNS is the inode of the initial pid namespace (PROC_PID_INIT_INO).
const initPidNS = 0xEFFFFFFC

// readLen is how much one read of the iterator asks for: a multiple of
// recordLen, so that reads end on a record.
const readLen = recordLen * 4096

// objects are owners.c's program, once loaded (LoadAndAssign fills them).
type objects struct {
	SocketFds *ebpf.Program `ebpf:"socket_fds"`
}

// impl is the loaded program and its link.
type impl struct {
	objs objects
	link *link.Iter
	buf  []byte
}

func newImpl() (*impl, error) {
	// The records carry thread group ids as the initial pid namespace
	// numbers them; /proc in another one numbers processes otherwise.
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return nil, fmt.Errorf("%w: pid namespace: %w", ErrUnavailable, err)
	}
	if st.Ino != initPidNS {
		return nil, fmt.Errorf("%w: ghostd runs in a pid namespace of its own (inode %d), whose pids the iterator does not report", ErrUnavailable, st.Ino)
	}
	obj, err := bpfload.Open(bpfload.KernelBTFPath, "owners.c", ownersObject)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	im := &impl{}
	if err := obj.Load("load iter/task_file", &im.objs); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	im.link, err = link.AttachIter(link.IterOptions{Program: im.objs.SocketFds})
	if err != nil {
		im.objs.SocketFds.Close()
		return nil, fmt.Errorf("%w: attach iter/task_file: %w", ErrUnavailable, err)
	}
	return im, nil
}

// each runs one pass, calling fn with every record as it is read, until
// fn returns false; closing the iterator then ends the pass in the kernel.
func (im *impl) each(ctx context.Context, fn func(rec []byte) bool) error {
	rc, err := im.link.Open()
	if err != nil {
		return fmt.Errorf("open iterator: %w", err)
	}
	defer rc.Close()
	if im.buf == nil {
		im.buf = make([]byte, readLen)
	}
	held := 0 // bytes of a record split across reads, at the start of buf
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := rc.Read(im.buf[held:])
		if n == 0 && err == nil {
			err = io.EOF
		}
		n += held
		whole := n - n%recordLen
		for off := 0; off < whole; off += recordLen {
			if !fn(im.buf[off : off+recordLen]) {
				return nil
			}
		}
		held = copy(im.buf, im.buf[whole:n])
		switch {
		case err == io.EOF && held != 0:
			return fmt.Errorf("read iterator: %d bytes of a truncated record", held)
		case err == io.EOF:
			return nil
		case err != nil:
			return fmt.Errorf("read iterator: %w", err)
		}
	}
}

func (im *impl) close() error {
	return errors.Join(im.link.Close(), im.objs.SocketFds.Close())
}
