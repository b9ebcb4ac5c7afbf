package probe

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// benchSuspects is how many live connections the benchmark probes per round.
const benchSuspects = 10000

// benchDialerEnv makes the test binary a dialer helper (see TestBenchDialerHelper).
const benchDialerEnv = "GD_PR_BENCH_DIAL"

// TestBenchDialerHelper is not a test: run with benchDialerEnv=ADDR,N inside
// the client namespace, it opens N connections to ADDR, prints "ready" and
// holds them until its stdin closes. The benchmark's peers live in this
// helper so the benchmark process stays under RLIMIT_NOFILE.
func TestBenchDialerHelper(t *testing.T) {
	spec := os.Getenv(benchDialerEnv)
	if spec == "" {
		t.Skip("helper process for BenchmarkVerdicts")
	}
	addr, count, _ := strings.Cut(spec, ",")
	n, err := strconv.Atoi(count)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	os.Exit(0)
}

// benchTargets opens n idle connections from Client (in a helper process)
// to Server through the router and returns the server ends as targets.
func benchTargets(b *testing.B, tn *testnet.Net, n int) []Target {
	l := tn.Server.Listen(b, "tcp4", net.JoinHostPort(tn.ServerV4.String(), "0"))
	accepted := make(chan net.Conn, n)
	go func() {
		defer close(accepted)
		for range n {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel) // after the child's Stop: cleanups run last-in first-out
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", tn.Client.Name, exe, "-test.run=^TestBenchDialerHelper$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", benchDialerEnv, l.Addr(), n))
	child := testnet.StartChild(b, cmd, time.Minute)
	targets := make([]Target, 0, n)
	timeout := time.After(2 * time.Minute)
	for range n {
		select {
		case c, ok := <-accepted:
			if !ok {
				b.Fatal("accept failed")
			}
			b.Cleanup(func() { c.Close() })
			targets = append(targets, targetOf(b, tn, c))
		case <-timeout:
			b.Fatalf("only %d of %d connections after 2 minutes", len(targets), n)
		}
	}
	if line, _ := child.ReadLine(); line != "ready" {
		b.Fatalf("dialer helper: %q", line)
	}
	return targets
}

// BenchmarkVerdicts measures verdicts per second for live suspects behind
// the conntrack router, with the rate unlimited and at the default rate, the
// process's CPU time (user and system) per verdict, and the memory a probe
// holds while it waits.
func BenchmarkVerdicts(b *testing.B) {
	needRoot(b)
	seq := prSeqReader(b)
	tn := testnet.New(b)
	targets := benchTargets(b, tn, benchSuspects)
	ctx := context.Background()

	run := func(b *testing.B, cfg Config, targets []Target) {
		p := New(cfg, seq, nil)
		defer p.Close()
		verdicts, notAlive, sent := 0, 0, 0
		start, cpu0 := time.Now(), processCPU(b)
		for b.Loop() {
			for _, r := range p.ProbeAll(ctx, targets) {
				verdicts++
				sent += r.Sent
				if r.Verdict != Alive {
					notAlive++
				}
			}
		}
		el, cpu := time.Since(start), processCPU(b)-cpu0
		if notAlive > 0 {
			b.Errorf("%d of %d live suspects not alive", notAlive, verdicts)
		}
		b.ReportMetric(float64(verdicts)/el.Seconds(), "verdicts/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(verdicts), "cpu-µs/verdict")
		b.ReportMetric(float64(sent)/float64(verdicts), "probes/verdict")
	}
	b.Run("unlimited", func(b *testing.B) {
		cfg := DefaultConfig()
		cfg.Rate = math.Inf(1)
		run(b, cfg, targets)
	})
	b.Run("unlimited-perhost-256", func(b *testing.B) {
		cfg := DefaultConfig()
		cfg.Rate = math.Inf(1)
		cfg.PerHost = 256
		run(b, cfg, targets)
	})
	b.Run("default-rate", func(b *testing.B) {
		// 200 probes/s: 1000 suspects take 5 s a round.
		run(b, DefaultConfig(), targets[:1000])
	})
	b.Run("inflight-memory", func(b *testing.B) {
		// Silent peers keep every probe waiting; measure the heap and stacks
		// they hold at their peak.
		const inflight = 2000
		tn.GoSilent(b)
		defer tn.Heal(b)
		cfg := DefaultConfig()
		cfg.HostHint = false // the probes alone, without the silent peers' echoes
		cfg.Rate = math.Inf(1)
		cfg.Attempts = 1
		cfg.Timeout = 2 * time.Second
		cfg.InFlight = inflight
		cfg.PerHost = inflight
		for b.Loop() {
			p := New(cfg, seq, nil)
			var base runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&base)
			done := make(chan struct{})
			go func() { p.ProbeAll(ctx, targets[:inflight]); close(done) }()
			time.Sleep(time.Second)
			var peak runtime.MemStats
			runtime.ReadMemStats(&peak)
			<-done
			used := (peak.HeapInuse + peak.StackInuse) - (base.HeapInuse + base.StackInuse)
			b.ReportMetric(float64(used)/inflight, "B/inflight")
		}
	})
}

// processCPU is the CPU time the test process has used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
