package bpfwalk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/ghostd/ghostd/internal/bpfload"
	"github.com/ghostd/ghostd/internal/nsthread"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Keys of the stats map (walk.c).
const (
	statRoot      = 0
	statTruncated = 1
	statLost      = 2
	statFilter    = 3
)

// runDone is what walk_hash returns when the last bucket is done.
const runDone = 0xffffffff

// maxRuns bounds the runs of one pass: each run emits up to ~2 400 records
// (a 512 KiB ring buffer), so this allows tens of millions of sockets.
const maxRuns = 1 << 14

// walkObjs are the objects both variants of the walk use.
type walkObjs struct {
	Records    *ebpf.Map     `ebpf:"records"`
	Stats      *ebpf.Map     `ebpf:"stats"`
	Want       *ebpf.Map     `ebpf:"want"`
	SetRoot    *ebpf.Program `ebpf:"set_root"`
	Covers     *ebpf.Program `ebpf:"covers"`
	GiveCookie *ebpf.Program `ebpf:"give_cookie"`
}

// castObjs load the variant that reads through bpf_rdonly_cast (6.2+).
type castObjs struct {
	walkObjs
	WalkHash *ebpf.Program `ebpf:"walk_hash"`
}

// copyObjs load the variant that copies sockets with bpf_probe_read_kernel.
type copyObjs struct {
	walkObjs
	WalkHash *ebpf.Program `ebpf:"walk_hash_copy"`
}

// impl is the loaded programs, the cookie hook and the ring buffer reader.
type impl struct {
	objs    walkObjs
	walk1   *ebpf.Program // walk_hash or walk_hash_copy
	variant string
	hook    link.Link
	rd      *ringbuf.Reader
	rec     ringbuf.Record
	runIn   [8]byte
	want    map[uint32]bool // what the want map holds
}

func newImpl(variant string) (*impl, error) {
	obj, err := bpfload.Open(bpfload.KernelBTFPath, "walk.c", walkObject)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	im := &impl{want: map[uint32]bool{}}
	// The cast variant where the kernel has bpf_rdonly_cast, else the copy.
	var castErr error
	if variant != VariantCopy {
		var o castObjs
		if castErr = obj.Load("load", &o); castErr == nil {
			im.objs, im.walk1, im.variant = o.walkObjs, o.WalkHash, VariantCast
		} else if variant == VariantCast {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, castErr)
		}
	}
	if im.walk1 == nil {
		var o copyObjs
		if err := obj.Load("load", &o); err != nil {
			if castErr != nil {
				err = fmt.Errorf("%w (and with bpf_rdonly_cast: %w)", err, castErr)
			}
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		im.objs, im.walk1, im.variant = o.walkObjs, o.WalkHash, VariantCopy
	}
	im.hook, err = link.AttachTracing(link.TracingOptions{Program: im.objs.GiveCookie})
	if err == nil {
		im.rd, err = ringbuf.NewReader(im.objs.Records)
	}
	if err != nil {
		im.close()
		return nil, fmt.Errorf("%w: attach: %w", ErrUnavailable, err)
	}
	ok, err := im.setRoot()
	if err != nil || !ok {
		im.close()
		return nil, fmt.Errorf("%w: find the TCP socket tables: %v (ok %v)", ErrUnavailable, err, ok)
	}
	// Decoding the kernel's BTF allocates several MiB once, all garbage
	// now: give it back rather than carry it in the daemon's resident size.
	debug.FreeOSMemory()
	return im, nil
}

func (im *impl) close() error {
	var errs []error
	if im.rd != nil {
		errs = append(errs, im.rd.Close())
	}
	if im.hook != nil {
		errs = append(errs, im.hook.Close())
	}
	for _, c := range []io.Closer{im.walk1, im.objs.GiveCookie, im.objs.Covers, im.objs.SetRoot, im.objs.Want, im.objs.Stats, im.objs.Records} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// run runs prog once on the calling thread with start as its argument.
func (im *impl) run(prog *ebpf.Program, start uint32) (uint32, error) {
	binary.NativeEndian.PutUint64(im.runIn[:], uint64(start))
	ret, err := prog.Run(&ebpf.RunOptions{Context: im.runIn[:]})
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", prog, err)
	}
	return ret, nil
}

// setRoot records the socket tables of the calling thread's namespace.
func (im *impl) setRoot() (bool, error) {
	ret, err := im.run(im.objs.SetRoot, 0)
	return ret == 1, err
}

func (im *impl) covers(nsFD int) (bool, error) {
	var ret uint32
	err := nsthread.InNetns(nsFD, func() (err error) {
		ret, err = im.run(im.objs.Covers, 0)
		return err
	})
	if err != nil {
		return false, err
	}
	if ret > 1 {
		return false, errors.New("no socket tables recorded")
	}
	return ret == 1, nil
}

// walk runs walk_hash until it is done, passing the records to fn after
// each run; it returns how many it passed.
func (im *impl) walk(ctx context.Context, netns []uint64, fn func([]byte) error) (int, error) {
	// Records a walk ended by fn left behind.
	if _, err := im.drain(func([]byte) error { return nil }); err != nil {
		return 0, err
	}
	for _, k := range []uint32{statTruncated, statLost} {
		if err := im.objs.Stats.Put(k, uint64(0)); err != nil {
			return 0, fmt.Errorf("reset stats: %w", err)
		}
	}
	if err := im.setWant(netns); err != nil {
		return 0, err
	}
	total := 0
	start := uint32(0)
	for runs := 0; ; runs++ {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		if runs == maxRuns {
			return total, fmt.Errorf("%w: %d runs did not reach the last bucket", ErrIncomplete, maxRuns)
		}
		next, err := im.run(im.walk1, start)
		if err != nil {
			return total, err
		}
		n, err := im.drain(fn)
		total += n
		if err != nil {
			return total, err
		}
		if next == runDone {
			break
		}
		if next <= start && runs > 0 {
			return total, fmt.Errorf("%w: run from bucket %d stopped at %d", ErrIncomplete, start, next)
		}
		start = next
	}
	var truncated, lost uint64
	if err := im.objs.Stats.Lookup(uint32(statTruncated), &truncated); err != nil {
		return total, fmt.Errorf("read stats: %w", err)
	}
	if err := im.objs.Stats.Lookup(uint32(statLost), &lost); err != nil {
		return total, fmt.Errorf("read stats: %w", err)
	}
	if truncated > 0 || lost > 0 {
		return total, fmt.Errorf("%w: %d hash chains cut short, %d records lost", ErrIncomplete, truncated, lost)
	}
	return total, nil
}

// setWant makes the want map hold netns and turns the filter on, or off
// when netns is empty.
func (im *impl) setWant(netns []uint64) error {
	next := make(map[uint32]bool, len(netns))
	for _, ino := range netns {
		next[uint32(ino)] = true
	}
	for ino := range im.want {
		if !next[ino] {
			if err := im.objs.Want.Delete(ino); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("update wanted namespaces: %w", err)
			}
			delete(im.want, ino)
		}
	}
	for ino := range next {
		if !im.want[ino] {
			if err := im.objs.Want.Put(ino, uint8(1)); err != nil {
				return fmt.Errorf("update wanted namespaces: %w", err)
			}
			im.want[ino] = true
		}
	}
	filter := uint64(0)
	if len(netns) > 0 {
		filter = 1
	}
	if err := im.objs.Stats.Put(uint32(statFilter), filter); err != nil {
		return fmt.Errorf("set filter: %w", err)
	}
	return nil
}

// drain passes every record waiting in the ring buffer to fn.
func (im *impl) drain(fn func([]byte) error) (int, error) {
	im.rd.SetDeadline(time.Now())
	n := 0
	for {
		err := im.rd.ReadInto(&im.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read ring buffer: %w", err)
		}
		if len(im.rec.RawSample) != RecordLen {
			return n, fmt.Errorf("%w: a record of %d bytes, want %d", ErrRecordLen, len(im.rec.RawSample), RecordLen)
		}
		n++
		if err := fn(im.rec.RawSample); err != nil {
			return n, err
		}
	}
}
