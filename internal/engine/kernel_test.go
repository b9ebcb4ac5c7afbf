package engine

import (
	"context"
	"testing"
	"time"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/tracker"
)

// keepaliveSocket is an idle socket with keepalive armed to fire in exp,
// its last ACK (a keepalive answer) lastACK ago.
func keepaliveSocket(cookie uint64, rport uint16, idle, lastACK, exp time.Duration) inventory.Socket {
	s := idleSocket(cookie, rport, idle)
	s.Timer, s.Expires = inventory.TimerKeepalive, uint32(exp.Milliseconds())
	s.Info.LastAckRecv = uint32(lastACK.Milliseconds())
	return s
}

// TestKeepaliveSuspectsAndDeadline: the engine hands each namespace's
// sysctls to the tracker, so the same Go-style keepalive socket (15 s) is
// left to the kernel where the sysctls say 15/15/9 and is an idle suspect
// where they are the kernel's defaults; every session says when its kernel
// would notice, counted from the document's time.
func TestKeepaliveSuspectsAndDeadline(t *testing.T) {
	e, inv, _, c := newTest()
	e.SetOptions(Options{Tracker: tracker.Config{Idle: time.Minute, Horizon: 78 * time.Second}, Now: c.now})
	fast := inventory.TCPSysctls{KeepaliveTime: 15 * time.Second, KeepaliveIntvl: 15 * time.Second, KeepaliveProbes: 9, Retries2: 15, Read: true}
	inv.ns = []inventory.Namespace{
		{Inode: 7, Name: "defaults", Path: "/run/netns/defaults", Kind: inventory.KindNamed, TCP: inventory.DefaultTCPSysctls()},
		{Inode: 8, Name: "fast", Path: "/run/netns/fast", Kind: inventory.KindNamed, TCP: fast},
	}
	pg := keepaliveSocket(1, 1, 10*time.Minute, 10*time.Minute, 110*time.Minute) // PostgreSQL on defaults
	goSock := keepaliveSocket(2, 2, 10*time.Minute, 5*time.Second, 10*time.Second)
	plain := idleSocket(3, 3, 10*time.Minute)
	inv.sockets[7] = []inventory.Socket{pg, goSock, plain}
	inv.sockets[8] = []inventory.Socket{goSock}
	e.Scan(context.Background())
	c.t = c.t.Add(10 * time.Second) // the document is made later than the scan

	type key struct {
		netns  uint64
		cookie uint64
	}
	got := map[key]string{}
	deadline := map[key]*float64{}
	basis := map[key]string{}
	for _, s := range e.Document().Sessions {
		k := key{s.NetnsInode, s.Cookie}
		got[k] = s.Verdict
		deadline[k], basis[k] = s.KernelDeadlineSeconds, s.KernelDeadlineBasis
	}
	for _, k := range []key{{7, 1}, {7, 2}, {7, 3}} {
		if _, ok := got[k]; !ok {
			t.Errorf("socket %v is no session: want an idle suspect", k)
		}
	}
	if _, ok := got[key{8, 2}]; ok {
		t.Error("a 15 s keepalive socket under 15/15/9 sysctls is a suspect: its kernel finds a dead peer in 30 s")
	}
	// PostgreSQL: the timer fires in 110 min, then 9 probes 75 s apart,
	// less the 10 s since the scan.
	want := (110*time.Minute + 9*75*time.Second - 10*time.Second).Seconds()
	if d := deadline[key{7, 1}]; d == nil || *d != want || basis[key{7, 1}] != tracker.DeadlineKeepalive {
		t.Errorf("PostgreSQL deadline %v (%s), want %v s keepalive", d, basis[key{7, 1}], want)
	}
	if d := deadline[key{7, 3}]; d != nil || basis[key{7, 3}] != tracker.DeadlineNone {
		t.Errorf("no keepalive: deadline %v (%s), want never", d, basis[key{7, 3}])
	}

	// Own settings, once known, replace the sysctl guess.
	e.SetKeepalive(inventory.Key{Netns: 7, Cookie: 2}, tracker.KeepaliveSettings{Time: 15 * time.Second, Intvl: 15 * time.Second, Probes: 9})
	e.Scan(context.Background())
	for _, s := range e.Document().Sessions {
		if s.NetnsInode == 7 && s.Cookie == 2 {
			t.Error("with its own 15/15/9 settings known, the Go socket is still a suspect")
		}
	}
}

// TestKeepaliveKernelEvidence: one keepalive probe out (often one whose ACK
// is on its way) never lets a blind probe's silence confirm an idle
// keepalive suspect; two unanswered do, as keepalive_failing says.
func TestKeepaliveKernelEvidence(t *testing.T) {
	e, inv, _, _ := newTest()
	e.SetOptions(Options{Tracker: tracker.Config{Idle: time.Minute, Horizon: 78 * time.Second}, Now: e.opts.Now})
	one := keepaliveSocket(1, 3, 10*time.Minute, 10*time.Minute, 75*time.Second)
	one.Retrans = 1
	two := keepaliveSocket(2, 3, 10*time.Minute, 10*time.Minute, 75*time.Second)
	two.Retrans = 2
	inv.sockets[7] = []inventory.Socket{one, two}
	e.Scan(context.Background())
	got := map[uint64]bool{}
	for _, tg := range e.Targets() {
		got[tg.Cookie] = tg.KernelEvidence
	}
	if ev, ok := got[1]; !ok || ev {
		t.Errorf("one keepalive probe out: target %v, kernel evidence %v; want a target without evidence", ok, ev)
	}
	if ev, ok := got[2]; !ok || !ev {
		t.Errorf("two keepalive probes out: target %v, kernel evidence %v; want a target with evidence", ok, ev)
	}
}

// TestKernelEvidence: what of a socket's own kernel probing lets a blind or
// uncertain verdict count. A receiver that shut its window is probed under
// the retransmit timer with tcpi_backoff growing and no retransmits
// counted: it is alive, and its backoff is no evidence.
func TestKernelEvidence(t *testing.T) {
	sock := func(timer inventory.Timer, retrans, backoff uint8, sndWnd uint32, info bool) *inventory.Socket {
		s := &inventory.Socket{State: inventory.StateEstablished, Timer: timer, Retrans: retrans}
		if info {
			s.Info.Len = 280
			s.Info.Backoff = backoff
			s.Info.SetOptional(1000, 2000, sndWnd, 65535)
		}
		return s
	}
	tests := []struct {
		name string
		s    *inventory.Socket
		want bool
	}{
		{"two retransmission timeouts", sock(inventory.TimerRetransmit, 2, 2, 65535, true), true},
		{"two without tcp_info", sock(inventory.TimerRetransmit, 2, 0, 0, false), true},
		{"one", sock(inventory.TimerRetransmit, 1, 1, 65535, true), false},
		{"backed off, window open", sock(inventory.TimerRetransmit, 0, 3, 65535, true), true},
		{"backed off probing a shut window", sock(inventory.TimerRetransmit, 0, 3, 0, true), false},
		{"persist timer", sock(inventory.TimerZeroWindow, 5, 5, 0, true), false},
		{"two keepalives unanswered", sock(inventory.TimerKeepalive, 2, 0, 65535, true), true},
		{"one keepalive out", sock(inventory.TimerKeepalive, 1, 0, 65535, true), false},
		{"no timer", sock(inventory.TimerNone, 0, 0, 65535, true), false},
	}
	for _, tt := range tests {
		if got := KernelEvidence(tt.s); got != tt.want {
			t.Errorf("%s: KernelEvidence = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestTargetRTO: a target carries its socket's retransmission timeout, so
// the prober waits as long for a slow peer as the socket's kernel would.
func TestTargetRTO(t *testing.T) {
	e, inv, _, _ := newTest()
	slow := idleSocket(1, 3, 10*time.Minute)
	slow.Info.RTT, slow.Info.RTTVar = 2_500_000, 250_000 // µs
	inv.sockets[7] = []inventory.Socket{slow}
	e.Scan(context.Background())
	ts := e.Targets()
	if len(ts) != 1 || ts[0].RTO != 3500*time.Millisecond {
		t.Fatalf("targets %+v, want one with RTO 3.5s", ts)
	}
	if got := RTO(&inventory.Socket{}); got != 0 {
		t.Errorf("RTO without tcp_info = %s, want 0", got)
	}
}
