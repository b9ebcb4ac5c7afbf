package tracker

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/inventory"
)

// sysctls returns read sysctls with keepalive time/intvl in seconds.
func sysctls(tm, intvl, probes int) inventory.TCPSysctls {
	return inventory.TCPSysctls{
		KeepaliveTime: time.Duration(tm) * time.Second, KeepaliveIntvl: time.Duration(intvl) * time.Second,
		KeepaliveProbes: probes, Retries2: 15, Read: true,
	}
}

func secs(n int) time.Duration { return time.Duration(n) * time.Second }

// keepaliveIdle is an ESTABLISHED socket with keepalive armed (expires,
// probes out), no data either way for idle, and its last ACK lastACK ago.
func keepaliveIdle(idle, lastACK, exp time.Duration, out uint8) *inventory.Socket {
	return sock(1, quiet(idle, idle), lastAck(lastACK), timer(inventory.TimerKeepalive, out), expires(exp))
}

// TestKeepaliveRule: a keepalive-on socket is an idle suspect unless its
// own kernel would give evidence (or abort) no later than ghostd confirms a
// dead idle peer (60 s idle + 15 s scan + 3 s probes = 78 s).
func TestKeepaliveRule(t *testing.T) {
	min := time.Minute
	cfg := Config{Idle: time.Minute, Horizon: 78 * time.Second}
	tests := []struct {
		name string
		sys  inventory.TCPSysctls
		own  *KeepaliveSettings
		s    *inventory.Socket
		want Reasons
	}{
		{"PostgreSQL: kernel defaults (7200 s), idle 10 min", sysctls(7200, 75, 9), nil,
			keepaliveIdle(10*min, 10*min, 110*min, 0), rs(ReasonIdle)},
		{"PostgreSQL, sysctls unknown (defaults assumed)", inventory.TCPSysctls{}, nil,
			keepaliveIdle(10*min, 10*min, 110*min, 0), rs(ReasonIdle)},
		{"PostgreSQL, idle below the threshold", sysctls(7200, 75, 9), nil,
			keepaliveIdle(59*time.Second, 59*time.Second, 119*min, 0), 0},
		{"Redis 300/100/3 known per socket", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(300), Intvl: secs(100), Probes: 3},
			keepaliveIdle(10*min, 2*min, secs(180), 0), rs(ReasonIdle)},
		{"Redis per socket, one probe out", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(300), Intvl: secs(100), Probes: 3},
			keepaliveIdle(10*min, 5*min, secs(40), 1), rs(ReasonIdle)},
		{"Redis on a host with fast sysctls: expires proves a longer time", sysctls(30, 10, 3), nil,
			keepaliveIdle(10*min, 10*time.Second, secs(250), 0), rs(ReasonIdle)},
		{"Redis on a host with fast sysctls: the last ACK proves a longer time", sysctls(30, 10, 3), nil,
			keepaliveIdle(10*min, secs(200), secs(5), 0), rs(ReasonIdle)},
		{"fast sysctls and nothing against them: left to the kernel", sysctls(30, 10, 3), nil,
			keepaliveIdle(10*min, secs(20), secs(5), 0), 0},
		{"Go 15/15/9 known per socket: left to the kernel", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(15), Intvl: secs(15), Probes: 9},
			keepaliveIdle(10*min, secs(5), secs(10), 0), 0},
		{"Go 15/15/9 with sysctls only: idle suspect", sysctls(7200, 75, 9), nil,
			keepaliveIdle(10*min, secs(5), secs(10), 0), rs(ReasonIdle)},
		{"per-socket zero fields fall back to the sysctls", sysctls(20, 10, 5), &KeepaliveSettings{},
			keepaliveIdle(10*min, secs(5), secs(10), 0), 0},
		{"keepalive_failing still fires", sysctls(7200, 75, 9), nil,
			keepaliveIdle(10*min, 10*min, secs(75), 2), rs(ReasonKeepaliveFailing)},
		{"keepalive_failing fires even when left to the kernel", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(15), Intvl: secs(15), Probes: 9},
			keepaliveIdle(10*min, secs(45), secs(15), 3), rs(ReasonKeepaliveFailing)},
		{"user timeout ends it within the horizon", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(20), Intvl: secs(5), UserTimeout: secs(25)},
			keepaliveIdle(10*min, secs(5), secs(10), 0), 0},
		{"user timeout, slow keepalive: still idle", sysctls(7200, 75, 9), &KeepaliveSettings{UserTimeout: secs(30)},
			keepaliveIdle(10*min, 10*min, 110*min, 0), rs(ReasonIdle)},
		{"user timeout overrides a single probe: failing shows in time", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(10), Intvl: secs(10), Probes: 1, UserTimeout: 10 * min},
			keepaliveIdle(10*min, secs(5), secs(5), 0), 0},
		{"one probe, the kernel aborts within the horizon", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(50), Intvl: secs(20), Probes: 1},
			keepaliveIdle(10*min, secs(5), secs(40), 0), 0},
		{"one probe, the kernel aborts after the horizon", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(70), Intvl: secs(20), Probes: 1},
			keepaliveIdle(10*min, secs(5), secs(60), 0), rs(ReasonIdle)},
		{"CLOSE_WAIT is never idle", sysctls(7200, 75, 9), nil,
			sock(1, state(inventory.StateCloseWait), quiet(10*min, 10*min), lastAck(secs(5)), timer(inventory.TimerKeepalive, 0), expires(100*min)), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(cfg)
			tr.SetSysctls(tt.s.Netns, tt.sys)
			if tt.own != nil {
				tr.SetKeepalive(tt.s.Key(), *tt.own)
			}
			if got := tr.Observe(t0, tt.s); got != tt.want {
				t.Errorf("reasons %q, want %q", got, tt.want)
			}
		})
	}
}

// TestKeepaliveRuleIsPhaseIndependent: a Redis socket (300/100/3, known)
// and a PostgreSQL one (defaults) stay idle suspects at every point of their
// keepalive cycle, and a Go one (15/15/9, known) never becomes one.
func TestKeepaliveRuleIsPhaseIndependent(t *testing.T) {
	cfg := Config{Idle: time.Minute, Horizon: 78 * time.Second}
	for _, c := range []struct {
		name   string
		sys    inventory.TCPSysctls
		own    *KeepaliveSettings
		period int // the socket's keepalive time: seconds between answered probes
		intvl  int // its interval
		want   Reasons
	}{
		{"redis", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(300), Intvl: secs(100), Probes: 3}, 300, 100, rs(ReasonIdle)},
		{"postgresql", sysctls(7200, 75, 9), nil, 7200, 75, rs(ReasonIdle)},
		{"go", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(15), Intvl: secs(15), Probes: 9}, 15, 15, 0},
		// Own settings unknown, sysctls that alone would leave it to the
		// kernel: the guess, raised by the timer, once called idle stays so.
		{"redis under fast sysctls, settings unknown", sysctls(20, 5, 3), nil, 300, 100, rs(ReasonIdle)},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := New(cfg)
			tr.SetSysctls(4026531840, c.sys)
			if c.own != nil {
				tr.SetKeepalive(inventory.Key{Netns: 4026531840, Cookie: 1}, *c.own)
			}
			now := t0
			for i := range 80 {
				// A probe answered since ago: the kernel re-armed the timer
				// for the interval when it sent it, and for what is left of
				// the keepalive time when that expired.
				since := secs(i * c.period / 80)
				exp := secs(c.period) - since
				if since < secs(c.intvl) {
					exp = secs(c.intvl) - since
				}
				s := keepaliveIdle(time.Hour, since, exp, 0)
				if got := tr.Observe(now, s); got != c.want {
					t.Fatalf("at %v into the cycle: %q, want %q", since, got, c.want)
				}
				tr.EndNamespace(now, s.Netns)
				now = now.Add(15 * time.Second)
			}
		})
	}
}

// TestKernelDeadline: when the socket's own kernel would give up on a dead peer.
func TestKernelDeadline(t *testing.T) {
	min := time.Minute
	tests := []struct {
		name string
		sys  inventory.TCPSysctls
		own  *KeepaliveSettings
		s    *inventory.Socket
		want Deadline
	}{
		{"PostgreSQL: timer 119 min, then 9 probes 75 s apart", sysctls(7200, 75, 9), nil,
			keepaliveIdle(10*min, 10*min, 119*min, 0),
			Deadline{Basis: DeadlineKeepalive, In: 119*min + 9*secs(75), LowerBound: true}},
		{"the last receive bounds the first probe from below", sysctls(7200, 75, 9), nil,
			keepaliveIdle(10*min, 10*min, 5*min, 0),
			Deadline{Basis: DeadlineKeepalive, In: secs(7200-600) + 9*secs(75), LowerBound: true}},
		{"Redis, one probe out", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(300), Intvl: secs(100), Probes: 3},
			keepaliveIdle(10*min, 5*min, secs(40), 1),
			Deadline{Basis: DeadlineKeepalive, In: secs(40 + 2*100), LowerBound: true}},
		{"all probes out: the next expiry aborts", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(300), Intvl: secs(100), Probes: 3},
			keepaliveIdle(10*min, 10*min, secs(30), 3),
			Deadline{Basis: DeadlineKeepalive, In: secs(30), LowerBound: true}},
		{"user timeout", sysctls(7200, 75, 9), &KeepaliveSettings{Time: secs(20), Intvl: secs(5), UserTimeout: secs(60)},
			keepaliveIdle(10*min, secs(10), secs(10), 0),
			Deadline{Basis: DeadlineUserTimeout, In: secs(50), LowerBound: true}},
		{"retransmitting: tcp_retries2 15 from the start", sysctls(7200, 75, 9), nil,
			sock(1, timer(inventory.TimerRetransmit, 0)),
			Deadline{Basis: DeadlineRetransmit, In: 924600 * time.Millisecond}},
		{"retransmitting, 10 timeouts gone", sysctls(7200, 75, 9), nil,
			sock(1, timer(inventory.TimerRetransmit, 10), backoff(10)),
			Deadline{Basis: DeadlineRetransmit, In: 924600*time.Millisecond - (204600*time.Millisecond + 120*time.Second)}},
		{"retransmitting with a user timeout", sysctls(7200, 75, 9), &KeepaliveSettings{UserTimeout: secs(30)},
			sock(1, timer(inventory.TimerRetransmit, 2), backoff(2)),
			Deadline{Basis: DeadlineUserTimeout, In: secs(30) - 1400*time.Millisecond}},
		{"zero window, the peer answers: never", sysctls(7200, 75, 9), nil,
			sock(1, timer(inventory.TimerZeroWindow, 0)), Deadline{Basis: DeadlineZeroWindow, Never: true}},
		{"no keepalive, nothing in flight: never", sysctls(7200, 75, 9), nil,
			sock(1, quiet(10*min, 10*min)), Deadline{Basis: DeadlineNone, Never: true}},
		{"delayed ACK hides keepalive", sysctls(7200, 75, 9), nil,
			sock(1, timer(inventory.TimerDelayedAck, 0)), Deadline{Basis: DeadlineUnknown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(Config{})
			tr.SetSysctls(tt.s.Netns, tt.sys)
			if tt.own != nil {
				tr.SetKeepalive(tt.s.Key(), *tt.own)
			}
			if diff := cmp.Diff(tt.want, tr.KernelOf(tt.s).Deadline); diff != "" {
				t.Errorf("deadline (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEntryKernel: a remembered suspect's Entry carries its kernel's
// settings and deadline, the sysctls corrected by what the socket proves.
func TestEntryKernel(t *testing.T) {
	tr := New(Config{Idle: time.Minute, Horizon: 78 * time.Second})
	tr.SetSysctls(4026531840, sysctls(60, 10, 3))
	s := keepaliveIdle(10*time.Minute, 10*time.Second, secs(250), 0) // Redis under fast sysctls
	if got := tr.Observe(t0, s); got != rs(ReasonIdle) {
		t.Fatalf("reasons %q", got)
	}
	e, ok := tr.Get(s.Key())
	if !ok {
		t.Fatal("not remembered")
	}
	want := Kernel{
		Keepalive: KeepaliveSettings{Time: secs(250), Intvl: secs(10), Probes: 3}, Retries2: 15,
		Deadline: Deadline{Basis: DeadlineKeepalive, In: secs(250 + 30), LowerBound: true},
	}
	if diff := cmp.Diff(want, e.Kernel); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
}

// TestOwnSettingsForgotten: a socket's own settings go when the socket has
// missed two complete dumps, and stay while it is dumped, healthy or not.
func TestOwnSettingsForgotten(t *testing.T) {
	tr := New(Config{Idle: time.Minute, Horizon: 78 * time.Second})
	k := inventory.Key{Netns: 4026531840, Cookie: 1}
	healthy := sock(1, timer(inventory.TimerKeepalive, 0), expires(secs(10)))
	stray := sock(1, netns(99), timer(inventory.TimerKeepalive, 0), expires(secs(10)))
	tr.SetKeepalive(stray.Key(), KeepaliveSettings{Time: secs(15)})
	tr.Observe(t0, healthy) // the tracker knows the namespace from now on
	tr.SetKeepalive(k, KeepaliveSettings{Time: secs(15), Intvl: secs(15), Probes: 9})
	if tr.KernelOf(stray).PerSocket {
		t.Error("settings kept for a namespace no scan showed: nothing would ever forget them")
	}
	for range 3 {
		tr.Observe(t0, healthy)
		tr.EndNamespace(t0, k.Netns)
	}
	if !tr.KernelOf(healthy).PerSocket {
		t.Fatal("own settings forgotten while the socket is dumped")
	}
	tr.EndNamespace(t0, k.Netns)
	if !tr.KernelOf(healthy).PerSocket {
		t.Fatal("own settings forgotten after one missed dump")
	}
	tr.EndNamespace(t0, k.Netns)
	if tr.KernelOf(healthy).PerSocket {
		t.Fatal("own settings kept after two missed dumps")
	}
}

// TestZeroWindowFirstSight: a one-shot scan sees a stall that began before
// it, bounded by the last data sent, and it stays a stall, never probed.
func TestZeroWindowFirstSight(t *testing.T) {
	cfg := Config{Stall: 2 * time.Second}
	for _, c := range []struct {
		name string
		s    *inventory.Socket
		want Reasons
	}{
		{"persist timer, data last sent 30 s ago", sock(1, timer(inventory.TimerZeroWindow, 0), quiet(time.Second, 30*time.Second)), rs(ReasonZeroWindow)},
		{"retransmit timer on a shut window", sock(1, timer(inventory.TimerRetransmit, 0), shrunk, quiet(time.Second, 30*time.Second)), rs(ReasonZeroWindow)},
		{"data sent 1 s ago: too young", sock(1, timer(inventory.TimerZeroWindow, 0), quiet(time.Second, time.Second)), 0},
		{"within one RTO of the threshold", sock(1, timer(inventory.TimerZeroWindow, 1), quiet(time.Second, 2500*time.Millisecond),
			func(s *inventory.Socket) { s.Info.RTO = 600_000 }), 0},
		{"window probes unanswered: retransmitting, not a stall", sock(1, timer(inventory.TimerZeroWindow, 2), quiet(time.Second, 30*time.Second)), rs(ReasonRetransmitting)},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := New(cfg)
			got := tr.Observe(t0, c.s)
			if got != c.want {
				t.Fatalf("reasons %q, want %q", got, c.want)
			}
			if got.Has(ReasonZeroWindow) && got.Probeable() {
				t.Error("a stall is probeable")
			}
			e, _ := tr.Get(c.s.Key())
			if e.TimerSince.After(t0) {
				t.Errorf("TimerSince %v after the observation", e.TimerSince)
			}
		})
	}
}
