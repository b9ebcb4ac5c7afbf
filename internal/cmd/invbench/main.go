//go:build linux

// Command invbench times inventory passes for scripts/bench-inventory.sh: a
// ghostd inventory pass (inventory.Dial + Dump, the Conn reused across runs)
// or a bare dump that receives the same sock_diag messages and only walks
// their headers (the floor; -two-walks: the per-family dumps ss makes). It prints one line of key=value results.
//
//	invbench -mode pass -netns gd-inv-1234 -runs 5
//	invbench -mode bare -netns gd-inv-1234 -runs 5
//	invbench -mode pass -netns ns1,ns2,... -runs 5   # one pass = every namespace
package main

import (
	"cmp"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ghostd/ghostd/internal/nsthread"

	"github.com/ghostd/ghostd/inventory"
	"golang.org/x/sys/unix"
)

func main() { os.Exit(run()) }

func run() int {
	mode := flag.String("mode", "pass", "comma-separated: pass (ghostd's inventory), bare (receive and discard), bare-two-walks (bare, one dump per family as ss), scan and scan-walk (inventory.Scanner with sock_diag or the one BPF walk), scan-alone and scan-walk-alone (the same over -alone only)")
	netnsList := flag.String("netns", "", "comma-separated /run/netns names; empty: the current namespace")
	runs := flag.Int("runs", 5, "timed runs (after one warm-up)")
	alone := flag.String("alone", "", "the /run/netns name the *-alone modes scan")
	flag.Parse()
	names := []string{""}
	if *netnsList != "" {
		names = strings.Split(*netnsList, ",")
	}
	var rs []runner
	for _, m := range strings.Split(*mode, ",") {
		var r runner
		var closeFn func()
		var err error
		switch m {
		case "pass":
			r, closeFn, err = passRunner(names)
		case "bare":
			r, closeFn, err = bareRunner(names, false)
		case "bare-two-walks":
			r, closeFn, err = bareRunner(names, true)
		case "scan", "scan-walk":
			r, closeFn, err = scanRunner(m, names, m == "scan-walk")
		case "scan-alone", "scan-walk-alone":
			r, closeFn, err = scanRunner(m, []string{*alone}, m == "scan-walk-alone")
		default:
			err = fmt.Errorf("unknown mode %q", m)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "invbench:", err)
			return 1
		}
		defer closeFn()
		rs = append(rs, r)
	}
	err := measure(names, *runs, rs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "invbench:", err)
		return 1
	}
	return 0
}

// nsFD opens a named namespace (or returns -1 for the current one).
func nsFD(name string) (int, uint64, error) {
	path := "/proc/self/ns/net"
	if name != "" {
		path = filepath.Join("/run/netns", name)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	if name == "" {
		unix.Close(fd)
		return -1, st.Ino, nil
	}
	return fd, st.Ino, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func maxRSSKiB() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Maxrss
}

// cpuTimes returns the process's user and system CPU time.
func cpuTimes() (user, sys time.Duration) {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// result collects one mode's timed runs.
type result struct {
	mode      string
	times     []time.Duration
	cpu       []time.Duration // user+system CPU per run
	netns     int             // namespaces per run, when not every -netns one
	sockets   int
	mallocs   uint64
	user, sys time.Duration
	dial      time.Duration
}

func (r *result) print(names []string) {
	perSocket := 0.0
	if r.sockets > 0 {
		perSocket = float64(r.mallocs) / float64(r.sockets*len(r.times))
	}
	var ms []string
	for _, t := range r.times {
		ms = append(ms, fmt.Sprintf("%.1f", float64(t.Microseconds())/1000))
	}
	perRun := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(len(r.times)) }
	var cpu []string
	for _, c := range r.cpu {
		cpu = append(cpu, fmt.Sprintf("%.1f", float64(c.Microseconds())/1000))
	}
	fmt.Printf("mode=%s netns=%d sockets=%d median_ms=%.1f runs_ms=%s dial_ms=%.1f allocs_per_socket=%.4f allocs_per_pass=%.0f maxrss_kib=%d user_ms_per_run=%.1f sys_ms_per_run=%.1f median_cpu_ms=%.1f cpu_runs_ms=%s\n",
		r.mode, cmp.Or(r.netns, len(names)), r.sockets, float64(median(r.times).Microseconds())/1000, strings.Join(ms, ","),
		float64(r.dial.Microseconds())/1000, perSocket, float64(r.mallocs)/float64(len(r.times)), maxRSSKiB(),
		perRun(r.user), perRun(r.sys), float64(median(r.cpu).Microseconds())/1000, strings.Join(cpu, ","))
}

// runner is one way of listing every socket of every namespace once.
type runner struct {
	res *result
	run func() (int, error)
}

// measure warms every runner up once, then times them in turn, run after
// run, so that all modes see the kernel's table in the same state (on a
// shared machine it changes: other namespaces come and go).
func measure(names []string, runs int, rs []runner) error {
	for _, r := range rs {
		if _, err := r.run(); err != nil { // buffers, the kernel's recv size
			return fmt.Errorf("%s: %w", r.res.mode, err)
		}
	}
	var ms runtime.MemStats
	for i := range runs {
		for j := range rs {
			r := rs[(i+j)%len(rs)]
			runtime.ReadMemStats(&ms)
			before := ms.Mallocs
			u0, s0 := cpuTimes()
			start := time.Now()
			n, err := r.run()
			el := time.Since(start)
			u1, s1 := cpuTimes()
			runtime.ReadMemStats(&ms)
			if err != nil {
				return fmt.Errorf("%s: %w", r.res.mode, err)
			}
			r.res.times = append(r.res.times, el)
			r.res.cpu = append(r.res.cpu, (u1-u0)+(s1-s0))
			r.res.sockets = n
			r.res.mallocs += ms.Mallocs - before
			r.res.user += u1 - u0
			r.res.sys += s1 - s0
		}
	}
	for _, r := range rs {
		r.res.print(names)
	}
	return nil
}

// passRunner is what ghostd does each scan: one reused Conn per namespace,
// a Dump of every state, a callback that looks at each socket.
func passRunner(names []string) (runner, func(), error) {
	type target struct {
		c     *inventory.Conn
		inode uint64
	}
	res := &result{mode: "pass"}
	t0 := time.Now()
	var targets []target
	closeAll := func() {
		for _, t := range targets {
			t.c.Close()
		}
	}
	for _, name := range names {
		fd, ino, err := nsFD(name)
		if err != nil {
			closeAll()
			return runner{}, nil, err
		}
		c, err := inventory.Dial(fd)
		if fd > 0 {
			unix.Close(fd)
		}
		if err != nil {
			closeAll()
			return runner{}, nil, err
		}
		targets = append(targets, target{c, ino})
	}
	res.dial = time.Since(t0)
	var states [16]int
	var bytes uint64
	fn := func(s *inventory.Socket) error {
		states[s.State&15]++
		if v, ok := s.Info.BytesReceived(); ok {
			bytes += v
		}
		return nil
	}
	return runner{res: res, run: func() (int, error) {
		total := 0
		for _, t := range targets {
			n, err := t.c.Dump(t.inode, inventory.AllStates, fn)
			total += n
			if err != nil {
				return total, err
			}
		}
		return total, nil
	}}, closeAll, nil
}

// bareRunner sends the same requests on plain netlink sockets and only walks
// the nlmsghdr chain of each 32 KiB datagram to find NLMSG_DONE: the floor.
// With twoWalks it makes one SOCK_DIAG_BY_FAMILY dump per family, as ss does.
func bareRunner(names []string, twoWalks bool) (runner, func(), error) {
	res := &result{mode: "bare"}
	fams := []uint8{0} // one TCPDIAG_GETSOCK walk, as inventory.Dump does
	if twoWalks {
		res.mode = "bare-two-walks"
		fams = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	var fds []int
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	t0 := time.Now()
	for _, name := range names {
		fd, err := bareSocket(name)
		if err != nil {
			closeAll()
			return runner{}, nil, err
		}
		fds = append(fds, fd)
	}
	res.dial = time.Since(t0)
	buf := make([]byte, 32<<10)
	return runner{res: res, run: func() (int, error) {
		total := 0
		for _, fd := range fds {
			for _, fam := range fams {
				n, err := bareDump(fd, fam, buf)
				total += n
				if err != nil {
					return total, err
				}
			}
		}
		return total, nil
	}}, closeAll, nil
}

// bareSocket opens a blocking NETLINK_SOCK_DIAG socket in the namespace.
func bareSocket(name string) (int, error) {
	fd := -1
	err := nsthread.Run(name, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		if err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 256<<10)
		}
		return err
	})
	return fd, err
}

var seq uint32

func bareDump(fd int, family uint8, buf []byte) (int, error) {
	seq++
	ne := binary.NativeEndian
	var req []byte
	if family == 0 {
		// TCPDIAG_GETSOCK with struct inet_diag_req: both families, one walk.
		req = make([]byte, 16+60)
		ne.PutUint16(req[4:], 18)
		req[16], req[19] = unix.AF_INET, 1<<(2-1) // INET_DIAG_INFO
		ne.PutUint32(req[16+4+40:], ^uint32(0))
		ne.PutUint32(req[16+4+44:], ^uint32(0))
		ne.PutUint32(req[16+52:], uint32(inventory.AllStates))
	} else {
		// SOCK_DIAG_BY_FAMILY with struct inet_diag_req_v2, as ss does.
		req = make([]byte, 16+56)
		ne.PutUint16(req[4:], 20)
		req[16], req[17], req[18] = family, unix.IPPROTO_TCP, 1<<(2-1)
		ne.PutUint32(req[20:], uint32(inventory.AllStates))
		ne.PutUint32(req[16+8+40:], ^uint32(0))
		ne.PutUint32(req[16+8+44:], ^uint32(0))
	}
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[6:], 0x1|0x100|0x200) // NLM_F_REQUEST|NLM_F_DUMP
	ne.PutUint32(req[8:], seq)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	n := 0
	for {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		for b := buf[:m]; len(b) >= 16; {
			l := int(ne.Uint32(b))
			switch ne.Uint16(b[4:]) {
			case 3: // NLMSG_DONE
				return n, nil
			case 2: // NLMSG_ERROR
				return n, fmt.Errorf("netlink error %d", int32(ne.Uint32(b[16:])))
			case 18, 20:
				n++
			}
			if l < 16 || l > len(b) {
				return n, errors.New("malformed")
			}
			b = b[(l+3)&^3:]
		}
	}
}
