package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/ghostd/ghostd/internal/nsthread"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/probe/bpf"
)

// iterImpl is the loaded program, its link and the wanted-cookie map.
type iterImpl struct {
	objs bpf.Objects
	link *link.Iter
	buf  []byte // output of the last pass, reused
	ones []uint8
}

func newIterImpl(btfPath string) (*iterImpl, error) {
	// One decoded copy of the kernel's BTF serves CO-RE and the attach target.
	obj, err := bpf.Open(btfPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSeq, err)
	}
	var target *btf.Func
	if err := obj.Kernel.TypeByName("bpf_iter_tcp", &target); err != nil {
		return nil, fmt.Errorf("%w: kernel has no iter/tcp BPF iterator (needs Linux 5.9+): %w", ErrNoSeq, err)
	}
	if err := setAutolabelBits(obj.Spec, btfPath); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSeq, err)
	}

	it := &iterImpl{}
	if err := obj.Load("load iter/tcp", &it.objs); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSeq, err)
	}
	it.link, err = link.AttachIter(link.IterOptions{Program: it.objs.DumpSeq})
	if err != nil {
		it.objs.Close()
		return nil, fmt.Errorf("%w: attach iter/tcp: %w", ErrNoSeq, err)
	}
	// Decoding the kernel's BTF for CO-RE allocates once, all garbage
	// now: give it back to the OS rather than carry it in the daemon's
	// resident size.
	debug.FreeOSMemory()
	return it, nil
}

// setAutolabelBits tells the program where inet_sock.inet_flags keeps a
// socket's IPV6_AUTOFLOWLABEL choice (Linux 6.6+). The bits are enumerators
// of an anonymous enum, which CO-RE cannot name, so they are looked up in
// the BTF at btfPath, read in place (anonEnumerators). On older kernels
// they are absent and the program uses the namespace's
// net.ipv6.auto_flowlabels default.
func setAutolabelBits(spec *ebpf.CollectionSpec, btfPath string) error {
	want := map[string]string{
		"INET_FLAGS_AUTOFLOWLABEL_SET": "autolabel_set_bit",
		"INET_FLAGS_AUTOFLOWLABEL":     "autolabel_bit",
	}
	found, err := enumeratorsIn(btfPath, "INET_FLAGS_AUTOFLOWLABEL_SET", "INET_FLAGS_AUTOFLOWLABEL")
	if err != nil || len(found) != len(want) {
		// Unreadable BTF costs only the socket's own opt-out: the
		// namespace's default applies, as on kernels before 6.6.
		return nil
	}
	for enumerator, variable := range want {
		if found[enumerator] >= 64 {
			return nil
		}
		v, ok := spec.Variables[variable]
		if !ok {
			return fmt.Errorf("program has no variable %s", variable)
		}
		if err := v.Set(uint32(found[enumerator])); err != nil {
			return fmt.Errorf("set %s: %w", variable, err)
		}
	}
	return nil
}

// enumeratorsIn is anonEnumerators over the BTF file at path, mapped, not read.
func enumeratorsIn(path string, names ...string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	raw, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	defer unix.Munmap(raw)
	return anonEnumerators(raw, names...)
}

func (it *iterImpl) close() error {
	return errors.Join(it.link.Close(), it.objs.Close())
}

// pass fills the wanted map with cookies, runs one iterator pass in the
// namespace at nsPath and returns its raw output (valid until the next pass).
// The map is emptied again before pass returns.
func (it *iterImpl) pass(ctx context.Context, nsPath string, cookies []uint64) (out []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := it.fill(cookies); err != nil {
		it.clear(cookies)
		return nil, fmt.Errorf("fill wanted cookies: %w", err)
	}
	defer func() {
		if cerr := it.clear(cookies); cerr != nil && err == nil {
			err = fmt.Errorf("clear wanted cookies: %w", cerr)
		}
	}()

	rc, err := nsthread.Open(nsPath, it.link.Open, io.ReadCloser.Close)
	if err != nil {
		return nil, err
	}
	defer rc.Close()

	// The namespace was fixed when the iterator was created; reading it from
	// this (unlocked) goroutine walks that namespace's sockets.
	if cap(it.buf) > 4<<20 {
		it.buf = nil // a huge pass's buffer is not kept for the small ones that follow
	}
	it.buf = it.buf[:0]
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if cap(it.buf)-len(it.buf) < 64<<10 {
			it.buf = append(it.buf, make([]byte, 64<<10)...)[:len(it.buf)]
		}
		n, err := rc.Read(it.buf[len(it.buf):cap(it.buf)])
		it.buf = it.buf[:len(it.buf)+n]
		if err == io.EOF || (n == 0 && err == nil) {
			return it.buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read iterator: %w", err)
		}
	}
}

func (it *iterImpl) fill(cookies []uint64) error {
	for len(it.ones) < len(cookies) {
		it.ones = append(it.ones, 1)
	}
	n, err := it.objs.Wanted.BatchUpdate(cookies, it.ones[:len(cookies)], nil)
	if errors.Is(err, ebpf.ErrNotSupported) { // batch ops need 5.6; iter/tcp needs 5.9, so rarely
		for _, c := range cookies[n:] {
			if err := it.objs.Wanted.Put(c, uint8(1)); err != nil {
				return err
			}
		}
		return nil
	}
	return err
}

// clear deletes cookies from the wanted map, tolerating ones that are absent.
func (it *iterImpl) clear(cookies []uint64) error {
	_, err := it.objs.Wanted.BatchDelete(cookies, nil)
	if err == nil {
		return nil
	}
	// A partial fill, or no batch support: delete one by one.
	var errs []error
	for _, c := range cookies {
		if err := it.objs.Wanted.Delete(c); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
