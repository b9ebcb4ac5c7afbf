package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// readErr reads from c with a short deadline and returns the error (a
// timeout: still open and quiet).
func readErr(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	defer c.SetReadDeadline(time.Time{})
	_, err := c.Read(make([]byte, 1))
	return err
}

// TestKillDestroyPolicy: with kill on in destroy mode, only confirmed ghosts
// die (their owner gets ECONNABORTED), a deny rule holds, the rate limit
// holds, and healthy, stalled and CLOSE_WAIT connections keep working.
func TestKillDestroyPolicy(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	var ghosts []*scenario
	for i := 0; i < 4; i++ {
		s, c := idlePair(t, n, "tcp4")
		ghosts = append(ghosts, &scenario{name: fmt.Sprintf("ghost %d", i), server: s, client: c})
	}
	denied := ghosts[1]
	deniedPort, _ := testnet.Tuple(denied.server)
	idleS, idleC := idlePair(t, n, "tcp4")
	idle := &scenario{name: "healthy idle", server: idleS, client: idleC}
	stallS, stallC := idlePair(t, n, "tcp4")
	fillWindow(t, stallS)
	cwS, cwC := n.Pair(t, "tcp4")
	cwC.Close()

	cfg := fmt.Sprintf(`kill:
  enabled: true
  mode: destroy
  min_age: 0s
  per_minute: 2
  deny:
    - ports: [%d]
`, deniedPort.Port())
	// The peers vanish before ghostd starts: a ghost whose first probe met
	// a live peer is alive, not probed again for probe.backoff (5 minutes).
	for _, g := range ghosts {
		n.LoseState(t, g.client)
	}
	d := startDaemon(t, cfg, "--netns", n.Server.Name, "--interval", "1s", "--idle", "2s", "--close-wait", "2s", "--stall", "2s", "--probe-interval", "1s")
	d.ready(60 * time.Second)

	// Each ghost's owner is blocked in Read, as a server waiting for the
	// next request is; a killed one wakes with ECONNABORTED.
	readErrs := make([]chan error, len(ghosts))
	for i, g := range ghosts {
		readErrs[i] = make(chan error, 1)
		go func(c net.Conn, ch chan<- error) {
			_, err := c.Read(make([]byte, 1))
			ch <- err
		}(g.server, readErrs[i])
	}
	results := make([]error, len(ghosts))
	done := make([]bool, len(ghosts))
	killed := func() (int, []string) {
		var k int
		var states []string
		for i, g := range ghosts {
			if !done[i] {
				select {
				case results[i] = <-readErrs[i]:
					done[i] = true
				default:
				}
			}
			switch {
			case !done[i]:
				states = append(states, g.name+": open")
			case errors.Is(results[i], syscall.ECONNABORTED):
				k++
				states = append(states, g.name+": aborted")
			default:
				states = append(states, fmt.Sprintf("%s: %v", g.name, results[i]))
			}
		}
		return k, states
	}
	took := waitFor(t, 20*time.Second, "two ghosts killed", func() (bool, string) {
		k, st := killed()
		doc, _ := d.sessions("")
		for _, s := range doc.Sessions {
			st = append(st, fmt.Sprintf("[%s %s %v %s ghost=%v killed=%v]", s.Remote, s.State, s.Reasons, s.Verdict, s.Ghost, s.Killed))
		}
		return k >= 2, strings.Join(st, ", ")
	})
	t.Logf("first kills %.1fs after the first scan", took.Seconds())
	time.Sleep(4 * time.Second) // more scans: the rate limit must still hold
	k, st := killed()
	if k != 2 {
		t.Errorf("killed %d ghosts, want exactly 2 (rate limit): %s", k, strings.Join(st, ", "))
	}
	if done[1] {
		t.Errorf("the denied ghost was touched: %v", results[1])
	}
	mfs, err := d.metrics()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := value(mfs, "ghostd_kill_supported", nil); !ok || v != 1 {
		t.Errorf("ghostd_kill_supported = %v (present %v), want 1 as root", v, ok)
	}
	if v, ok := value(mfs, "ghostd_ghosts_killed_total", map[string]string{"netns": n.Server.Name, "verdict": "silent"}); !ok || v != 2 {
		t.Errorf("ghostd_ghosts_killed_total{verdict=silent} = %v (present %v), want 2", v, ok)
	}
	doc, err := d.sessions("")
	if err != nil {
		t.Fatal(err)
	}
	nk := 0
	for _, s := range doc.Sessions {
		if s.Killed {
			nk++
		}
	}
	if nk != 2 {
		t.Errorf("JSON shows %d killed sessions, want 2", nk)
	}

	// Healthy: still carries data both ways. Stalled: the reader can drain it.
	// CLOSE_WAIT (kill.close_wait off): still there, reads EOF, not aborted.
	roundTrip(t, idle)
	stallC.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(stallC, make([]byte, 1<<16)); err != nil {
		t.Errorf("stalled connection: reader cannot drain: %v", err)
	}
	if err := readErr(cwS); err != io.EOF {
		t.Errorf("CLOSE_WAIT leak: read = %v, want EOF (still open, not aborted)", err)
	}
	if !strings.Contains(d.logs(), "audit") && !strings.Contains(d.logs(), "kill") {
		t.Errorf("no audit line in the log")
	}
}

// TestKillKeepaliveMode: in keepalive mode ghostd arms the kernel's keepalive
// on a silent ghost, and the owner sees ETIMEDOUT; a healthy idle connection
// is not touched.
func TestKillKeepaliveMode(t *testing.T) {
	n, cs := idleNet(t, "tcp4", "tcp4")
	g, idle := cs[0], cs[1]
	cfg := `kill:
  enabled: true
  mode: keepalive
  min_age: 0s
  keepalive:
    idle: 1s
    interval: 1s
    count: 2
  user_timeout: 3s
`
	n.DropFromClient(t, g.c) // before ghostd starts, as in TestKillDestroyPolicy
	d := startDaemon(t, cfg, "--netns", n.Server.Name, "--interval", "1s", "--idle", "2s", "--probe-interval", "1s")
	d.ready(60 * time.Second)
	took := waitFor(t, 30*time.Second, "owner sees ETIMEDOUT", func() (bool, string) {
		err := readErr(g.s)
		return errors.Is(err, syscall.ETIMEDOUT), fmt.Sprint(err)
	})
	t.Logf("keepalive mode: owner got ETIMEDOUT %.1fs after the first scan", took.Seconds())
	roundTrip(t, &scenario{name: "healthy idle", server: idle.s, client: idle.c})
}

// TestKillShutdownCloseWait: with kill.close_wait on, a CLOSE_WAIT leak is
// ended with shutdown(SHUT_WR): both sides end with FIN, no RST on the wire.
func TestKillShutdownCloseWait(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	cwS, cwC := n.Pair(t, "tcp4")
	// Count RSTs leaving either end.
	rst := `table inet gd_rst {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp flags & rst == rst counter
	}
}
`
	n.Client.Nft(t, rst)
	n.Server.Nft(t, rst)
	cwC.Close()
	cfg := `kill:
  enabled: true
  close_wait: true
  min_age: 0s
`
	startDaemon(t, cfg, "--netns", n.Server.Name, "--interval", "1s", "--close-wait", "2s", "--no-probe")
	local, _ := testnet.Tuple(cwS)
	waitFor(t, 20*time.Second, "the leak is shut down", func() (bool, string) {
		out := n.Server.Exec(t, "ss", "-tnH", "state", "close-wait", "sport", "= :"+fmt.Sprint(local.Port()))
		return strings.TrimSpace(out) == "", out
	})
	for _, ns := range []*testnet.NS{n.Client, n.Server} {
		out := ns.Exec(t, "nft", "list", "table", "inet", "gd_rst")
		if !strings.Contains(out, "counter packets 0 ") {
			t.Errorf("RST sent from %s:\n%s", ns.Name, out)
		}
	}
	// The owner's output side is shut: a write fails locally with EPIPE.
	if _, err := cwS.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write after shutdown = %v, want EPIPE", err)
	}
}
