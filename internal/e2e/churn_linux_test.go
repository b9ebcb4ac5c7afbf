package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// churnDuration is how long TestChurn opens and closes connections.
const churnDuration = 60 * time.Second

// procStat returns a process's open fd count and RSS in bytes.
func procStat(pid int) (fds int, rss int64, err error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb << 10
		}
	}
	return len(ents), rss, nil
}

// TestChurn runs ghostd (probing on, every namespace) while about 2 000
// connections a second open and close for 60 s and 50 namespaces come and
// go. ghostd must not crash, its fd count must stay flat, its RSS bounded, and
// namespaces must appear in and leave the metrics.
func TestChurn(t *testing.T) {
	needRootLong(t, "churn runs for a minute")
	t.Parallel() // overlaps with the other minute-long test
	ns := testnet.NewNS(t, "ch")
	prefix := fmt.Sprintf("gd-ch-%d-", os.Getpid())
	// Scope ghostd to this test's namespaces: other tests' come and go too.
	d := startDaemonBin(t, ghostdPlainBin, "", "--netns", "gd-ch-*", "--interval", "1s", "--idle", "2s", "--probe-interval", "1s")
	pid := d.cmd.Process.Pid

	// Connections: a listener and paced dialers inside ns.
	l := ns.Listen(t, "tcp4", "127.0.0.1:0")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var opened atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const workers = 8
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			_ = ns.Do(func() error {
				tick := time.NewTicker(workers * time.Second / 2000)
				defer tick.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return nil
					case <-tick.C:
					}
					c, err := net.DialTimeout("tcp4", l.Addr().String(), time.Second)
					if err != nil {
						continue
					}
					if i%2 == 0 {
						c.(*net.TCPConn).SetLinger(0) // half end with RST, half with FIN
					}
					c.Close()
					opened.Add(1)
				}
			})
		}(w)
	}

	// Namespaces: 50 created and deleted over the run, each living ~2.4 s.
	type nsLife struct {
		name       string
		seen, gone bool
		created    time.Time
		deleted    bool
	}
	var lives []*nsLife
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		every := churnDuration / 56
		for i := 0; i < 50; i++ {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			name := fmt.Sprintf("%s%d", prefix, i)
			if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
				t.Errorf("ip netns add: %v %s", err, out)
				return
			}
			life := &nsLife{name: name, created: time.Now()}
			mu.Lock()
			lives = append(lives, life)
			mu.Unlock()
			go func() {
				time.Sleep(2400 * time.Millisecond)
				exec.Command("ip", "netns", "del", name).Run()
				mu.Lock()
				life.deleted = true
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lives {
			exec.Command("ip", "netns", "del", l.name).Run()
		}
	})

	// Sample the daemon and its metrics once a second.
	start := time.Now()
	var fdSamples []int
	var maxRSS int64
	for time.Since(start) < churnDuration {
		time.Sleep(time.Second)
		select {
		case <-d.exited:
			t.Fatalf("ghostd exited during churn: %v\n%s", d.err, d.logs())
		default:
		}
		fds, rss, err := procStat(pid)
		if err != nil {
			t.Fatalf("ghostd process: %v", err)
		}
		fdSamples = append(fdSamples, fds)
		maxRSS = max(maxRSS, rss)
		mfs, err := d.metrics()
		if err != nil {
			t.Errorf("scrape during churn: %v", err)
			continue
		}
		mu.Lock()
		for _, l := range lives {
			_, present := value(mfs, "ghostd_netns_info", map[string]string{"netns": l.name})
			if present {
				l.seen = true
			} else if l.seen && l.deleted {
				l.gone = true
			}
		}
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	time.Sleep(3 * time.Second) // let the last deleted namespaces leave
	if mfs, err := d.metrics(); err == nil {
		mu.Lock()
		for _, l := range lives {
			if _, present := value(mfs, "ghostd_netns_info", map[string]string{"netns": l.name}); !present && l.seen {
				l.gone = true
			}
		}
		mu.Unlock()
	}

	rate := float64(opened.Load()) / churnDuration.Seconds()
	fds, _, _ := procStat(pid)
	t.Logf("churn: %d connections (%.0f/s), %d namespaces; ghostd fds first/last/max %d/%d/%d, max RSS %.1f MiB",
		opened.Load(), rate, len(lives), fdSamples[0], fds, maxInt(fdSamples), float64(maxRSS)/(1<<20))
	if rate < 1000 {
		t.Errorf("churn reached only %.0f connections/s", rate)
	}
	// Flat: after the namespaces are gone, ghostd holds no more fds than
	// at the start (allowing a few for scrapes in flight).
	if fds > fdSamples[0]+4 {
		t.Errorf("fd count grew: %d at start, %d at the end (samples %v)", fdSamples[0], fds, fdSamples)
	}
	if maxRSS > 128<<20 {
		t.Errorf("RSS reached %.1f MiB, want ≤ 128 MiB", float64(maxRSS)/(1<<20))
	}
	seen, gone := 0, 0
	for _, l := range lives {
		if l.seen {
			seen++
		}
		if l.gone {
			gone++
		}
	}
	t.Logf("namespaces seen in metrics: %d/%d, left the metrics: %d", seen, len(lives), gone)
	if seen < len(lives)/2 || gone < seen {
		t.Errorf("namespaces in metrics: %d of %d seen, %d of those left", seen, len(lives), gone)
	}
	if _, err := d.stop(2 * time.Second); err != nil {
		t.Errorf("SIGTERM after churn: %v", err)
	}
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
