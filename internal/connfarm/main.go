//go:build linux

// Command connfarm holds many established loopback TCP connections open, in
// one or more network namespaces, for the inventory benchmark
// (scripts/bench-inventory.sh). It is a test tool, not part of ghostd.
//
// The parent splits the work into worker processes of at most -fds file
// descriptors each (two per connection: client and server end), prints
// "ready CONNS" when every connection is established, and holds them until
// stdin reaches EOF, it gets SIGINT/SIGTERM, or -hold passes. Workers die
// with the parent (PR_SET_PDEATHSIG), and the parent kills them by pid.
//
//	connfarm -netns gd-inv-1234 -conns 100000
//	connfarm -netns ns1,ns2,ns3 -conns 1000   # 1000 in each
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ghostd/ghostd/internal/nsthread"
)

func main() { os.Exit(run()) }

func run() int {
	var (
		netnsList = flag.String("netns", "", "comma-separated /run/netns names to fill; empty: the current namespace")
		conns     = flag.Int("conns", 1000, "connections per namespace")
		fds       = flag.Int("fds", 20000, "file descriptors per worker process at most")
		hold      = flag.Duration("hold", 30*time.Minute, "give up holding after this long")
		worker    = flag.Bool("worker", false, "internal: run one worker")
		jobs      = flag.String("jobs", "", "internal: NETNS=COUNT,... for a worker")
	)
	flag.Parse()
	if *worker {
		return runWorker(*jobs)
	}
	if *conns <= 0 || *fds < 64 {
		fmt.Fprintln(os.Stderr, "connfarm: -conns must be > 0 and -fds >= 64")
		return 2
	}
	names := []string{""}
	if *netnsList != "" {
		names = strings.Split(*netnsList, ",")
	}
	return runParent(names, *conns, (*fds-48)/2, *hold)
}

// job is a number of connections to open in one namespace.
type job struct {
	netns string
	n     int
}

// plan packs the connections into workers of at most perWorker each.
func plan(names []string, conns, perWorker int) [][]job {
	var workers [][]job
	var cur []job
	room := perWorker
	for _, ns := range names {
		for left := conns; left > 0; {
			if room == 0 {
				workers, cur, room = append(workers, cur), nil, perWorker
			}
			k := min(left, room)
			cur = append(cur, job{ns, k})
			left -= k
			room -= k
		}
	}
	if len(cur) > 0 {
		workers = append(workers, cur)
	}
	return workers
}

func runParent(names []string, conns, perWorker int, hold time.Duration) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "connfarm:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()

	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	ready := make(chan error)
	for _, w := range plan(names, conns, perWorker) {
		var spec []string
		for _, j := range w {
			spec = append(spec, j.netns+"="+strconv.Itoa(j.n))
		}
		cmd := exec.Command(self, "-worker", "-jobs", strings.Join(spec, ","))
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			fmt.Fprintln(os.Stderr, "connfarm:", err)
			return 1
		}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "connfarm:", err)
			return 1
		}
		procs = append(procs, cmd)
		go func() {
			line, err := bufio.NewReader(out).ReadString('\n')
			if err == nil && !strings.HasPrefix(line, "ready") {
				err = fmt.Errorf("worker %d said %q", cmd.Process.Pid, line)
			}
			ready <- err
			_, _ = io.Copy(io.Discard, out)
		}()
	}
	start := time.Now()
	for range procs {
		select {
		case err := <-ready:
			if err != nil {
				fmt.Fprintln(os.Stderr, "connfarm: worker failed:", err)
				return 1
			}
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "connfarm: interrupted while connecting")
			return 1
		}
	}
	fmt.Printf("ready %d connections (%d sockets) in %d namespaces, %d workers, %.1fs\n",
		conns*len(names), 2*conns*len(names), len(names), len(procs), time.Since(start).Seconds())

	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-ctx.Done():
	case <-eof:
	}
	return 0
}

func runWorker(spec string) int {
	var held []net.Conn
	total := 0
	for _, part := range strings.Split(spec, ",") {
		ns, count, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(count)
		if !ok || err != nil {
			fmt.Fprintf(os.Stderr, "connfarm: bad job %q\n", part)
			return 2
		}
		cs, err := connect(ns, n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "connfarm: netns %q: %v\n", ns, err)
			return 1
		}
		held = append(held, cs...)
		total += n
	}
	fmt.Printf("ready %d\n", total)
	// Hold until the parent kills us, or dies (PR_SET_PDEATHSIG).
	for {
		time.Sleep(time.Hour)
		runtime.KeepAlive(held)
	}
}

// connect opens n connections to a fresh listener inside the namespace.
// Sockets belong to the namespace of the thread that creates them, so the
// work runs on a thread nsthread.Run moved there.
func connect(netns string, n int) ([]net.Conn, error) {
	var conns []net.Conn
	err := nsthread.Run(netns, func() error {
		// No keepalive: Go's default (probes every 15 s, 9 unanswered
		// abort) makes 200k loopback sockets send bursts of probes that
		// overflow the softirq backlog on a busy machine, and connections
		// then die after about 150 s (TcpExtTCPAbortOnTimeout).
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		type result struct {
			conns []net.Conn
			err   error
		}
		accepted := make(chan result, 1)
		go func() {
			var cs []net.Conn
			for range n {
				c, err := ln.Accept()
				if err != nil {
					accepted <- result{cs, err}
					return
				}
				cs = append(cs, c)
			}
			accepted <- result{cs, nil}
		}()
		var cs []net.Conn
		d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
		for i := range n {
			c, err := d.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return fmt.Errorf("dial %d of %d: %w", i+1, n, err)
			}
			cs = append(cs, c)
		}
		a := <-accepted
		if a.err != nil {
			return errors.Join(errors.New("accept"), a.err)
		}
		conns = append(cs, a.conns...)
		return nil
	})
	return conns, err
}
