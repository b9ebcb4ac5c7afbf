package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/realserver"
	"github.com/ghostd/ghostd/internal/testnet"
)

// What happens to a real server's client (issue 9's scenarios).
const (
	healthyIdle = "healthy idle"
	healthyBusy = "healthy busy"
	hostDied    = "client host died"  // every packet of the flow dropped in the client host
	natForgot   = "NAT forgot"        // conntrack -D in the router, tcp_loose=0: its own stack resets the server's next segment
	natSilent   = "NAT forgot, drops" // the same on a NAT gateway that drops what it cannot map
	restarted   = "client restarted"  // client socket aborted, its RST lost
	newConn     = "new after kill"    // a connection opened after the kill
	rsIdle      = "2s"                // --idle for the scenario tests
	rsKillCfg   = "probe:\n  backoff: 1s\nkill:\n  enabled: true\n  mode: destroy\n  min_age: 0s\n  per_minute: 1000\n"
	rsReportCfg = "probe:\n  backoff: 1s\n"
)

// rsConn is one client connection of a real server, named by its scenario,
// and what ghostd, the server and the kernel said about it.
type rsConn struct {
	kind, network string
	c             *realserver.Client
	local, remote netip.AddrPort // the server's socket: local = server, remote = the router's masquerade address and port
	ghost         bool

	verdict        string // ghostd's, with its reasons
	inViewBefore   bool   // in the server's own view before the kill
	inViewAfter    bool   // ... and after
	killed         bool   // ghostd's JSON says killed
	kernelGhost    string // the kernel-judge phase: ghostd scan's verdict for the same scenario
	kernelReaped   bool   // keepalive 1 s x 3 armed at the end reaped it
	reapedMeasured bool
}

func (x *rsConn) name() string { return x.kind + " " + x.network }
func (x *rsConn) key() string  { return x.local.String() + " " + x.remote.String() }

func isGhostKind(kind string) bool {
	return kind == hostDied || kind == natForgot || kind == natSilent || kind == restarted
}

// sessionTuple is a session's key in rsConn.key form (v4-mapped unmapped).
func sessionTuple(s *exporter.Session) string {
	l, err1 := netip.ParseAddrPort(s.Local)
	r, err2 := netip.ParseAddrPort(s.Remote)
	if err1 != nil || err2 != nil {
		return s.Local + " " + s.Remote
	}
	return netip.AddrPortFrom(l.Addr().Unmap(), l.Port()).String() + " " + netip.AddrPortFrom(r.Addr().Unmap(), r.Port()).String()
}

// rsFixture is one real server behind a masquerading, strictly tracking
// router, with its clients.
type rsFixture struct {
	t     *testing.T
	n     *testnet.Net
	srv   *realserver.Server
	conns []*rsConn
	stop  chan struct{}
	mu    sync.Mutex
	busy  []error // errors of the busy clients
}

func newRSFixture(t *testing.T, startServer realserver.Starter) *rsFixture {
	n := testnet.NewMasquerade(t)
	f := &rsFixture{t: t, n: n, srv: startServer(t, n.Server, n.ServerV4, n.ServerV6), stop: make(chan struct{})}
	t.Cleanup(func() { close(f.stop) })
	return f
}

// connect opens a client of the given scenario, proves it gets answers and
// reads the tuple the server's socket has from the router's conntrack.
func (f *rsFixture) connect(kind, network string) *rsConn {
	f.t.Helper()
	c := f.srv.Dial(f.t, f.n.Client, network)
	if err := c.Ask(); err != nil {
		f.t.Fatalf("%s %s: first request: %v", kind, network, err)
	}
	x := &rsConn{kind: kind, network: network, c: c, ghost: isGhostKind(kind)}
	x.local, x.remote = f.n.ServerSide(f.t, c.Conn)
	f.conns = append(f.conns, x)
	if kind == healthyBusy {
		go f.keepAsking(x)
	}
	return x
}

// keepAsking sends a request every 200 ms (at most 3000) until the test ends.
func (f *rsFixture) keepAsking(x *rsConn) {
	every(200*time.Millisecond, 3000, f.stop, func() bool {
		if err := x.c.Ask(); err != nil {
			f.mu.Lock()
			f.busy = append(f.busy, fmt.Errorf("%s: %w", x.name(), err))
			f.mu.Unlock()
			return false
		}
		return true
	})
}

func (f *rsFixture) busyErrors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.busy)
}

// vanish makes a ghost scenario happen to x.
func (f *rsFixture) vanish(x *rsConn) {
	f.t.Helper()
	switch x.kind {
	case hostDied:
		f.n.DropFlow(f.t, x.c.Conn)
	case natForgot:
		f.n.ForgetClientFlow(f.t, x.c.Conn)
	case natSilent:
		f.n.ForgetClientFlowSilently(f.t, x.c.Conn)
	case restarted:
		f.n.LoseState(f.t, x.c.Conn)
	default:
		f.t.Fatalf("vanish: %s is not a ghost scenario", x.kind)
	}
}

// view returns the server's own view of its clients as a set.
func (f *rsFixture) view() map[netip.AddrPort]bool {
	f.t.Helper()
	v, err := f.srv.View()
	if err != nil {
		f.t.Fatal(err)
	}
	m := map[netip.AddrPort]bool{}
	for _, ap := range v {
		m[ap] = true
	}
	return m
}

func (f *rsFixture) daemonArgs(extra ...string) []string {
	return append([]string{"--netns", f.n.Server.Name, "--interval", "1s", "--idle", rsIdle, "--probe-interval", "1s"}, extra...)
}

// byTuple indexes a document's sessions by sessionTuple.
func byTuple(doc *exporter.Document) map[string]*exporter.Session {
	m := map[string]*exporter.Session{}
	for i := range doc.Sessions {
		m[sessionTuple(&doc.Sessions[i])] = &doc.Sessions[i]
	}
	return m
}

func verdictOf(s *exporter.Session) string {
	if s == nil {
		return "not a suspect"
	}
	v := s.Verdict
	if s.Ghost {
		v += " (ghost)"
	}
	return fmt.Sprintf("%s [%s]", v, strings.Join(s.Reasons, ","))
}

// checkReasons fails when a ghost's reasons are not what the server's
// keepalive settings allow: idle, or keepalive_failing for Go's 15 s default.
func checkReasons(t *testing.T, srv string, x *rsConn, s *exporter.Session) {
	t.Helper()
	ok := slices.Contains(s.Reasons, "idle") || (srv == "go" && slices.Contains(s.Reasons, "keepalive_failing"))
	if !ok {
		t.Errorf("%s: %s: ghost with reasons %v, want idle (or keepalive_failing on Go's defaults)", srv, x.name(), s.Reasons)
	}
}

// probeRounds runs `ghostd probe` rounds times over every ESTABLISHED socket
// in the server's namespace that is not a ghost, and returns the number of
// probes run and every one that did not say alive.
func (f *rsFixture) probeRounds(rounds int, ghosts map[string]bool, each func(round int)) (int, []string) {
	f.t.Helper()
	var (
		mu    sync.Mutex
		bad   []string
		total int
	)
	for round := 0; round < rounds; round++ {
		socks, err := realserver.Sockets(f.n.Server)
		if err != nil {
			f.t.Fatal(err)
		}
		start := time.Now()
		var wg sync.WaitGroup
		for _, sk := range socks {
			if ghosts[sk.Local.String()+" "+sk.Remote.String()] {
				continue
			}
			total++
			wg.Add(1)
			go func(sk realserver.Socket) {
				defer wg.Done()
				out, err := exec.Command(ghostdPlainBin, "probe", "--json", "--netns", f.n.Server.Name,
					sk.Local.String(), sk.Remote.String()).Output()
				var r struct{ Verdict string }
				jerr := json.Unmarshal(out, &r)
				if err != nil || jerr != nil || r.Verdict != "alive" {
					// A socket that closed meanwhile is refused (exit 1, "not in the socket table"): not a verdict.
					if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 && strings.Contains(string(ee.Stderr), "not in the socket table") {
						return
					}
					mu.Lock()
					bad = append(bad, fmt.Sprintf("round %d %s -> %s (%s): %v %s", round, sk.Local, sk.Remote, sk.Comm, err, out))
					mu.Unlock()
				}
			}(sk)
		}
		wg.Wait()
		if each != nil {
			each(round)
		}
		// A peer answers one out-of-window segment per 500 ms: space the rounds.
		time.Sleep(max(0, time.Second-time.Since(start)))
	}
	return total, bad
}

// table logs the verdict table the issue asks for.
func (f *rsFixture) table(name string, took time.Duration) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%.0fs): scenario | ghostd (report phase) | server view before kill -> after | killed | ghostd scan (kernel phase) | kernel reaped\n", name, took.Seconds())
	rows := slices.Clone(f.conns)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].network < rows[j].network })
	for _, x := range rows {
		verdict, view, killed := x.verdict, fmt.Sprintf("%-5t -> %-5t", x.inViewBefore, x.inViewAfter), fmt.Sprint(x.killed)
		if x.verdict == "" { // opened after the report phase
			verdict, view, killed = "-", "-", "-"
		} else if x.ghost && !x.inViewBefore {
			view = "gone: the server's own keepalive ended it first"
		}
		kernel, reaped := "- (gone)", "-"
		if x.reapedMeasured {
			kernel, reaped = x.kernelGhost, fmt.Sprint(x.kernelReaped)
		}
		fmt.Fprintf(&b, "  %-24s | %-26s | %-14s | %-6s | %-26s | %s\n", x.name(), verdict, view, killed, kernel, reaped)
	}
	f.t.Log(b.String())
}

func mapsEqual[K comparable](a, b map[K]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys[K comparable](m map[K]bool) []string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprint(k))
	}
	sort.Strings(out)
	return out
}
