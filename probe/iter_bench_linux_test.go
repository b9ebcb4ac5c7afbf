package probe

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/inventory"
)

// BenchmarkIterPass measures one iterator pass over a namespace holding many
// loopback connections (both ends of each are sockets), with 10 wanted
// cookies and with every socket wanted, against a sock_diag dump with
// tcp_info of the same namespace. Reported: ns/socket (per socket in the
// namespace). Set GHOSTD_BENCH_LARGE=1 to add 200 000 connections (400 000
// sockets, ~1.5 GiB of kernel memory, ~10 s to build). Each size's
// connections are built only when one of its sub-benchmarks is selected.
func BenchmarkIterPass(b *testing.B) {
	r := iterReader(b)
	sizes := []int{20_000}
	if os.Getenv("GHOSTD_BENCH_LARGE") == "1" {
		sizes = append(sizes, 200_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) { iterBenchSize(b, r, n) })
	}
}

func iterBenchSize(b *testing.B, r *IterReader, n int) {
	ns := testnet.NewNS(b, "it")
	cookies := iterFarm(b, ns, n)
	sockets := len(cookies)
	perSocket := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(sockets), "ns/socket")
	}
	some := make([]uint64, 10)
	for i, j := range rand.Perm(len(cookies))[:len(some)] {
		some[i] = cookies[j]
	}

	b.Run("iter/wanted=10", func(b *testing.B) {
		for b.Loop() {
			got, err := r.ReadSeq(context.Background(), ns.Path, some)
			if err != nil || len(got) != len(some) {
				b.Fatalf("ReadSeq: %d of %d sockets, %v", len(got), len(some), err)
			}
		}
		perSocket(b)
	})
	b.Run("iter/wanted=all", func(b *testing.B) {
		for b.Loop() {
			got, err := r.ReadSeq(context.Background(), ns.Path, cookies)
			if err != nil || len(got) != sockets {
				b.Fatalf("ReadSeq: %d of %d sockets, %v", len(got), sockets, err)
			}
		}
		perSocket(b)
	})
	dump := func(b *testing.B) func() {
		conn, err := inventory.DialPath(ns.Path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		return func() {
			seen, err := conn.Dump(ns.Inode, inventory.AllStates, func(*inventory.Socket) error { return nil })
			if err != nil || seen < sockets {
				b.Fatalf("Dump: %d of %d sockets, %v", seen, sockets, err)
			}
		}
	}
	b.Run("inventory-dump", func(b *testing.B) {
		d := dump(b)
		for b.Loop() {
			d()
		}
		perSocket(b)
	})
	// Alternating the two in one loop keeps the ratio honest on a
	// machine whose load changes from one sub-benchmark to the next.
	b.Run("ratio-iter10-to-dump", func(b *testing.B) {
		d := dump(b)
		var iterT, dumpT time.Duration
		for b.Loop() {
			t0 := time.Now()
			if _, err := r.ReadSeq(context.Background(), ns.Path, some); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			d()
			iterT, dumpT = iterT+t1.Sub(t0), dumpT+time.Since(t1)
		}
		b.ReportMetric(float64(iterT.Nanoseconds())/float64(b.N)/float64(sockets), "iter-ns/socket")
		b.ReportMetric(float64(dumpT.Nanoseconds())/float64(b.N)/float64(sockets), "dump-ns/socket")
		b.ReportMetric(float64(iterT)/float64(dumpT), "iter/dump")
	})
}

// iterFarm opens n loopback connections inside ns (bounded in count and in
// time) and returns the cookies of both ends of each. RLIMIT_NOFILE is often
// far below 2n and may not be raisable (no CAP_SYS_RESOURCE), so the sockets
// are parked in flight: sent with SCM_RIGHTS into a unix socket pair nobody
// reads, then closed here. Closing the pair in b.Cleanup releases them, with
// a RST each (SO_LINGER 0: no TIME_WAIT left behind).
func iterFarm(b testing.TB, ns *testnet.NS, n int) []uint64 {
	b.Helper()
	const perListener, batch, perMsg, srcPorts = 20_000, 1000, 250, 40_000
	if n > 200_000 {
		b.Fatalf("iterFarm: %d connections is more than the bound of 200000", n)
	}
	stash, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		unix.Close(stash[0])
		unix.Close(stash[1])
	})
	// Each message queues ~1 KiB against the sender's buffer.
	if err := unix.SetsockoptInt(stash[0], unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 256<<20); err != nil {
		b.Fatalf("SO_SNDBUFFORCE: %v", err)
	}
	park := func(fds []int) error {
		for len(fds) > 0 {
			k := min(perMsg, len(fds))
			if err := unix.Sendmsg(stash[0], []byte{0}, unix.UnixRights(fds[:k]...), nil, unix.MSG_DONTWAIT); err != nil {
				return fmt.Errorf("park %d sockets: %w", k, err)
			}
			for _, fd := range fds[:k] {
				unix.Close(fd)
			}
			fds = fds[k:]
		}
		return nil
	}

	cookies := make([]uint64, 0, 2*n)
	start := time.Now()
	err = ns.Do(func() error {
		var listeners []unix.SockaddrInet4
		var lfds []int
		defer func() {
			for _, fd := range lfds {
				unix.Close(fd) // established connections outlive their listener
			}
		}()
		for i := 0; i < n; i += perListener {
			lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			lfds = append(lfds, lfd)
			if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				return err
			}
			if err := unix.Listen(lfd, 4096); err != nil {
				return err
			}
			sa, err := unix.Getsockname(lfd)
			if err != nil {
				return err
			}
			listeners = append(listeners, *sa.(*unix.SockaddrInet4))
		}
		linger := &unix.Linger{Onoff: 1, Linger: 0}
		fds := make([]int, 0, 2*batch)
		for i := 0; i < n; i += batch {
			if time.Since(start) > 3*time.Minute {
				return fmt.Errorf("only %d of %d connections after %v", i, n, time.Since(start))
			}
			li := i / perListener
			fds = fds[:0]
			for j := i; j < min(i+batch, n); j++ {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				fds = append(fds, fd)
				if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger); err != nil {
					return err
				}
				// An explicit, unique source (127.0.1.x, port) spares the kernel's
				// ephemeral-port search, which slows down as the range fills.
				src := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 1, byte(1 + j/srcPorts)}, Port: 20000 + j%srcPorts}
				if err := unix.Bind(fd, src); err != nil {
					return fmt.Errorf("connection %d: bind %v:%d: %w", j, src.Addr, src.Port, err)
				}
				if err := unix.Connect(fd, &listeners[li]); err != nil {
					return fmt.Errorf("connection %d: %w", j, err)
				}
			}
			for j := i; j < min(i+batch, n); j++ {
				fd, _, err := unix.Accept4(lfds[li], unix.SOCK_CLOEXEC)
				if err != nil {
					return err
				}
				fds = append(fds, fd)
			}
			for _, fd := range fds {
				c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
				if err != nil {
					return err
				}
				cookies = append(cookies, c)
			}
			if err := park(fds); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("iterFarm in %s: %v", ns.Name, err)
	}
	b.Logf("%d connections (%d sockets) in %s built in %v", n, 2*n, ns.Name, time.Since(start).Round(time.Millisecond))
	return cookies
}
