package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/probe"
)

// netstat reads one counter of /proc/net/netstat (or /proc/net/snmp) in ns.
func netstat(t *testing.T, ns *testnet.NS, group, name string) uint64 {
	t.Helper()
	out := ns.Exec(t, "cat", "/proc/net/netstat", "/proc/net/snmp")
	var header []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != group+":" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		if i := slices.Index(header, name); i > 0 && i < len(f) {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				t.Fatalf("netstat %s %s: %v", group, name, err)
			}
			return v
		}
		header = nil
	}
	t.Fatalf("netstat: no counter %s %s in %s", group, name, ns.Name)
	return 0
}

var nftCounterRE = regexp.MustCompile(`counter packets (\d+)`)

// nftPackets sums the packet counters in nft list output.
func nftPackets(t *testing.T, out string) uint64 {
	t.Helper()
	var sum uint64
	for _, m := range nftCounterRE.FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

// sumSeries adds up every series of the family name whose labels include want.
func sumSeries(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	for _, m := range mfs[name].GetMetric() {
		ok := true
		for k, v := range want {
			if !slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool { return lp.GetName() == k && lp.GetValue() == v }) {
				ok = false
			}
		}
		if ok {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return sum
}

// byLabel returns the series of family name by the value of label.
func byLabel(mfs map[string]*dto.MetricFamily, name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range mfs[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out[lp.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// phaseStats is what polling the daemon saw while one attack ran.
type phaseStats struct {
	name        string
	falseGhosts map[string]bool // healthy connections seen as ghost or killed
	verdicts    map[string]int  // healthy sessions' verdicts, one count per poll
	maxReplies  map[string]int  // the most replies one new probe round of a healthy session took, by family
	rounds      map[string]int  // new probe rounds seen per healthy connection, by name (its RTT changed)
	polls       int
}

// sessionPoller polls /api/v1/sessions and files what it sees about the
// healthy connections under the current phase.
type sessionPoller struct {
	d       *daemon
	healthy map[string]string // scenario.key to name
	control string
	mu      sync.Mutex
	phases  []*phaseStats
	errs    int
	ctrl    struct{ ghost, killed bool }
	modes   map[string]bool    // probe modes of the healthy sessions' probe rounds
	lastRTT map[string]float64 // by healthy connection
}

func (p *sessionPoller) phase(name string) *phaseStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := &phaseStats{name: name, falseGhosts: map[string]bool{}, verdicts: map[string]int{}, maxReplies: map[string]int{}, rounds: map[string]int{}}
	p.phases = append(p.phases, ps)
	return ps
}

func (p *sessionPoller) poll() {
	doc, err := p.d.sessions("")
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.errs++
		return
	}
	ps := p.phases[len(p.phases)-1]
	ps.polls++
	for i := range doc.Sessions {
		s := &doc.Sessions[i]
		k := sessionKey(s)
		if k == p.control {
			p.ctrl.ghost = p.ctrl.ghost || s.Ghost
			p.ctrl.killed = p.ctrl.killed || s.Killed
			continue
		}
		name, ok := p.healthy[k]
		if !ok {
			continue
		}
		ps.verdicts[s.Verdict]++
		if s.RTTSeconds != nil && *s.RTTSeconds != p.lastRTT[k] {
			ps.rounds[name]++
			ps.maxReplies[s.Family] = max(ps.maxReplies[s.Family], s.Replies)
			p.lastRTT[k] = *s.RTTSeconds
			p.modes[s.ProbeMode] = true
		}
		if s.Ghost || s.Killed {
			ps.falseGhosts[k] = true
		}
	}
}

func (p *sessionPoller) run(stop <-chan struct{}) {
	every(250*time.Millisecond, 4800, stop, func() bool { p.poll(); return true })
}

// TestDaemonKillUnderAttack runs `ghostd run --kill` with a generous kill
// rate and a short min age on a 20 ms path with strict conntrack, while an
// attacker on the router forges packets against three healthy idle
// connections (two IPv4, one IPv6) that ghostd keeps re-probing: in-window
// RST sprays, RST floods, spoofed ICMP unreachables, spoofed ACKs to the
// peer, exact RSTs in frames for another host, and exact RSTs with bad
// checksums. No healthy connection may ever be shown as a ghost or killed,
// and each must still carry data both ways at the end. A fourth connection
// whose client goes silent in the same run must be killed, so the kill path
// is shown to be live under the same settings.
func TestDaemonKillUnderAttack(t *testing.T) {
	needRoot(t)
	start := time.Now()
	seq, err := probe.NewIterReader()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("BPF TCP iterator unavailable: %v", err)
		}
		t.Skipf("BPF TCP iterator unavailable (the attacker's knowledge and ghostd's in-window probes need it): %v", err)
	}
	t.Cleanup(func() { seq.Close() })

	n := testnet.New(t)
	t.Logf("20 ms added to the path by %s", n.Delay(t, 20*time.Millisecond))
	env := &attackEnv{n: n, atk: n.Attacker(t)}
	env.frames = env.atk.Frames(t, testnet.RouterServerIf)

	var victims []*victim
	healthy := map[string]string{}
	for i, network := range []string{"tcp4", "tcp4", "tcp6"} {
		s, c := idlePair(t, n, network)
		v := &victim{scenario: &scenario{name: fmt.Sprintf("healthy %d (%s)", i, network), server: s, client: c}}
		roundTrip(t, v.scenario)
		v.local, v.remote = testnet.Tuple(s)
		healthy[v.key()] = v.name
		victims = append(victims, v)
	}
	ctlS, ctlC := idlePair(t, n, "tcp4")
	control := &scenario{name: "control (client goes silent)", server: ctlS, client: ctlC}
	roundTrip(t, control)

	// What an on-path attacker knows: the server sockets' sequence state.
	cookies := make([]uint64, len(victims))
	for i, v := range victims {
		cookies[i] = testnet.Cookie(t, v.server.(syscall.Conn))
	}
	states, err := seq.ReadSeq(context.Background(), n.Server.Path, cookies)
	if err != nil || len(states) != len(victims) {
		t.Fatalf("read the attacker's knowledge: %v %v", states, err)
	}
	for i, v := range victims {
		v.st = states[cookies[i]]
	}

	cfg := `probe:
  backoff: 500ms
  reconfirm: 1s
kill:
  per_minute: 600
`
	d := startDaemon(t, cfg, "--netns", n.Server.Name, "--idle", "2s", "--interval", "1s", "--probe-interval", "600ms", "--kill", "--kill-min-age", "2s")
	poller := &sessionPoller{d: d, healthy: healthy, control: control.key(), modes: map[string]bool{}, lastRTT: map[string]float64{}}
	poller.phase("warm-up")
	stopPoll := make(chan struct{})
	pollDone := make(chan struct{})
	go func() { defer close(pollDone); poller.run(stopPoll) }()
	t.Cleanup(func() {
		select {
		case <-stopPoll:
		default:
			close(stopPoll)
		}
		<-pollDone
	})

	// Every connection is a suspect and answered a probe before the attacks.
	waitFor(t, 20*time.Second, "all four connections probed alive", func() (bool, string) {
		doc, err := d.sessions("")
		if err != nil {
			return false, err.Error()
		}
		alive := 0
		var st []string
		for _, s := range doc.Sessions {
			st = append(st, fmt.Sprintf("[%s %v %s]", s.Remote, s.Reasons, s.Verdict))
			if _, ok := healthy[sessionKey(&s)]; s.Verdict == "alive" && (ok || sessionKey(&s) == control.key()) {
				alive++
			}
		}
		return alive == 4, strings.Join(st, " ")
	})
	scrape := func() map[string]*dto.MetricFamily {
		t.Helper()
		mfs, err := d.metrics()
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		return mfs
	}
	killed := func(mfs map[string]*dto.MetricFamily) float64 {
		return sumSeries(mfs, "ghostd_ghosts_killed_total", nil)
	}
	if k := killed(scrape()); k != 0 {
		t.Fatalf("ghostd_ghosts_killed_total = %v before any attack, want 0", k)
	}

	// The control's client goes silent: its peer is gone for ghostd.
	// Its owner is blocked in Read, as a server waiting for the next
	// request is: a kill wakes it with ECONNABORTED.
	n.DropFromClient(t, ctlC)
	ctlSilent := time.Now()
	type readResult struct {
		err  error
		took time.Duration
	}
	ctlRead := make(chan readResult, 1)
	go func() {
		_, err := ctlS.Read(make([]byte, 1))
		ctlRead <- readResult{err, time.Since(ctlSilent)}
	}()

	// Each attack alone, then all of them at once.
	type phase struct {
		name    string
		attacks []*daemonAttack
		stats   *phaseStats
		// measured
		sent                 uint64
		reached              map[string]uint64 // by attack
		probes, kills, drops float64
		rejected, replies    map[string]float64
	}
	reached := map[*daemonAttack]func() uint64{}
	var phases []*phase
	all := &phase{name: "all at once"}
	for i := range daemonAttacks {
		a := &daemonAttacks[i]
		if a.setup != nil {
			r, ok := a.setup(t, env)
			if !ok {
				continue
			}
			reached[a] = r
		}
		phases = append(phases, &phase{name: a.name, attacks: []*daemonAttack{a}})
		all.attacks = append(all.attacks, a)
	}
	phases = append(phases, all)
	const phaseLen = 7 * time.Second
	for _, ph := range phases {
		ph.stats = poller.phase(ph.name)
		rxOff, rejects := false, false
		for _, a := range ph.attacks {
			rxOff = rxOff || a.rxOff
			rejects = rejects || a.rejects
		}
		if rxOff {
			n.Server.Exec(t, "ethtool", "-K", testnet.ServerIf, "rx", "off")
		}
		reachedBefore := map[*daemonAttack]uint64{}
		for _, a := range ph.attacks {
			if r := reached[a]; r != nil {
				reachedBefore[a] = r()
			}
		}
		before := scrape()
		sentBefore := env.atk.Sent()
		ctx, cancel := context.WithTimeout(context.Background(), phaseLen)
		var wg sync.WaitGroup
		var runErr atomic.Value
		for _, a := range ph.attacks {
			for _, v := range victims {
				wg.Go(func() {
					if err := a.run(ctx, env, v); err != nil {
						runErr.Store(fmt.Errorf("%s: %w", a.name, err))
					}
				})
			}
		}
		<-ctx.Done()
		cancel()
		wg.Wait()
		if err, _ := runErr.Load().(error); err != nil {
			t.Errorf("phase %q: attacker: %v", ph.name, err)
		}
		after := scrape()
		if rxOff {
			n.Server.Exec(t, "ethtool", "-K", testnet.ServerIf, "rx", "on")
		}
		ph.sent = env.atk.Sent() - sentBefore
		ph.reached = map[string]uint64{}
		for a, b := range reachedBefore {
			ph.reached[a.name] = reached[a]() - b
		}
		delta := func(name string) float64 { return sumSeries(after, name, nil) - sumSeries(before, name, nil) }
		ph.probes, ph.kills, ph.drops = delta("ghostd_probes_total"), killed(after)-killed(before), delta("ghostd_probe_capture_drops_total")
		diff := func(name, label string) map[string]float64 {
			out := map[string]float64{}
			b := byLabel(before, name, label)
			for k, v := range byLabel(after, name, label) {
				if dv := v - b[k]; dv > 0 {
					out[k] = dv
				}
			}
			return out
		}
		ph.rejected = diff("ghostd_probe_replies_rejected_total", "why")
		ph.replies = diff("ghostd_probe_replies_total", "kind")

		// The attack reached its target, and ghostd probed meanwhile.
		if ph.sent == 0 {
			t.Errorf("phase %q: the attacker sent nothing", ph.name)
		}
		if ph.probes == 0 {
			t.Errorf("phase %q: ghostd sent no probe during the attack", ph.name)
		}
		if rejects && len(ph.rejected) == 0 {
			t.Errorf("phase %q: probe_replies_rejected_total did not grow: the attack never reached the capture while a probe waited", ph.name)
		}
		for name, r := range ph.reached {
			if r == 0 {
				t.Errorf("phase %q: none of the packets of %q got where they were aimed", ph.name, name)
			}
		}
		poller.mu.Lock()
		fg := len(ph.stats.falseGhosts)
		for _, v := range victims {
			if ph.stats.rounds[v.name] == 0 {
				t.Errorf("phase %q: %s was never seen probed during the attack", ph.name, v.name)
			}
		}
		poller.mu.Unlock()
		if fg > 0 {
			t.Errorf("phase %q: %d healthy connections shown as ghosts or killed", ph.name, fg)
		}
	}

	// The control is killed, and it is the only kill.
	var ctl readResult
	select {
	case ctl = <-ctlRead:
	case <-time.After(20 * time.Second):
		t.Fatalf("the silent control was not killed within %v of going silent", time.Since(ctlSilent).Round(time.Second))
	}
	if !errors.Is(ctl.err, syscall.ECONNABORTED) {
		t.Errorf("control: owner's read = %v, want ECONNABORTED (killed)", ctl.err)
	}
	waitFor(t, 5*time.Second, "the kill counted", func() (bool, string) {
		k := killed(scrape())
		return k >= 1, fmt.Sprintf("killed_total %v", k)
	})
	close(stopPoll)
	<-pollDone

	final := scrape()
	if k := killed(final); k != 1 {
		t.Errorf("ghostd_ghosts_killed_total = %v, want exactly 1 (the silent control)", k)
	}
	if v, ok := value(final, "ghostd_ghosts_killed_total", map[string]string{"netns": n.Server.Name, "verdict": "silent"}); !ok || v != 1 {
		t.Errorf("ghostd_ghosts_killed_total{verdict=silent} = %v (present %v), want 1", v, ok)
	}
	for _, v := range victims {
		if st := testnet.TCPInfo(t, v.server).State; st != 1 /* ESTABLISHED */ {
			t.Errorf("%s: server socket in state %d after the attacks, want ESTABLISHED", v.name, st)
			continue
		}
		if err := readErr(v.server); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: server read = %v, want a timeout (open and quiet)", v.name, err)
		}
		roundTrip(t, v.scenario)
	}

	poller.mu.Lock()
	defer poller.mu.Unlock()
	if !poller.ctrl.killed {
		t.Logf("the control's killed session was not seen in a poll (it leaves the list once gone)")
	}
	if !poller.modes["in_window"] || len(poller.modes) != 1 {
		t.Errorf("healthy sessions' probe modes %v, want only in_window", poller.modes)
	}
	if warm := poller.phases[0]; len(warm.falseGhosts) > 0 {
		t.Errorf("before the attacks: %d healthy connections shown as ghosts", len(warm.falseGhosts))
	} else {
		t.Logf("before the attacks: %d polls saw healthy verdicts %v", warm.polls, warm.verdicts)
	}
	for _, ph := range phases {
		t.Logf("%-38q attacker sent %6d packets, got through %v; ghostd sent %2.0f probes, rejected %v, took replies %v, capture drops %.0f; %d polls saw healthy verdicts %v (most replies to one round %v), probe rounds per connection %v: false ghosts %d; kills (the control's) %.0f",
			ph.name, ph.sent, ph.reached, ph.probes, ph.rejected, ph.replies, ph.drops, ph.stats.polls, ph.stats.verdicts, ph.stats.maxReplies, ph.stats.rounds, len(ph.stats.falseGhosts), ph.kills)
	}
	t.Logf("control killed %.1fs after its client went silent; %d failed polls; test took %.1fs", ctl.took.Seconds(), poller.errs, time.Since(start).Seconds())
}
