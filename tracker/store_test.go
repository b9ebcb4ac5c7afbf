package tracker

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ghostd/ghostd/inventory"
)

// socketDiff compares sockets field for field, tcp_info's unexported fields included.
func socketDiff(want, got inventory.Socket) string {
	return cmp.Diff(want, got, cmp.AllowUnexported(inventory.TCPInfo{}), cmpopts.EquateComparable(netip.AddrPort{}))
}

// TestSocketRoundTrip checks that Get returns the socket exactly as observed,
// although the tracker stores it in another form.
func TestSocketRoundTrip(t *testing.T) {
	full := func(s *inventory.Socket) {
		s.Retrans, s.Expires, s.RQueue, s.WQueue, s.UID, s.Inode = 3, 201, 17, 4096, 1000, 123456
		s.Ifindex = 7
		i := &s.Info
		i.CAState, i.Retransmits, i.Probes, i.Backoff, i.Options, i.SndWScale, i.RcvWScale = 4, 2, 1, 3, 7, 9, 7
		i.RTO, i.SndMSS, i.RcvMSS, i.Unacked, i.Lost, i.Retrans = 204000, 1448, 536, 2, 1, 1
		i.LastAckSent, i.RTT, i.RTTVar, i.SndCwnd, i.TotalRetrans = 5, 150, 75, 10, 9
		i.SetOptional(1<<40+1, 1<<33+5, 64240, 65483)
	}
	addrs := func(local, remote string) func(*inventory.Socket) {
		return func(s *inventory.Socket) {
			s.Local, s.Remote = netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)
			if s.Local.Addr().Is6() || s.Remote.Addr().Is6() {
				s.Family = inventory.FamilyInet6
			}
		}
	}
	cw := state(inventory.StateCloseWait) // remembered whatever the rest
	tests := []struct {
		name string
		s    *inventory.Socket
	}{
		{"ipv4", sock(1, cw)},
		{"ipv4 every field", sock(1, cw, full)},
		{"ipv6", sock(1, cw, full, addrs("[2001:db8::2]:7000", "[2001:db8:ffff::1:2]:40000"))},
		{"v4-mapped ipv6", sock(1, cw, full, addrs("[::ffff:198.51.100.2]:7000", "[::ffff:192.0.2.2]:40000"))},
		{"ipv6 unspecified local", sock(1, cw, addrs("[::]:0", "[2001:db8::1]:443"))},
		{"no addresses", sock(1, cw, func(s *inventory.Socket) { s.Local, s.Remote = netip.AddrPort{}, netip.AddrPort{} })},
		{"port without address", sock(1, cw, func(s *inventory.Socket) { s.Remote = netip.AddrPortFrom(netip.Addr{}, 9) })},
		{"no tcp_info", sock(1, cw, full, infoLen(0))},
		{"tcp_info before bytes_acked", sock(1, cw, full, infoLen(inventory.MinInfoLen))},
		{"tcp_info before snd_wnd", sock(1, cw, full, infoLen(192))},
		{"odd values", sock(^uint64(0), cw, full, netns(^uint64(0)), func(s *inventory.Socket) {
			s.Family, s.Timer, s.Info.Len = 0, 200, 0xffff
		})},
		{"last_ack", sock(1, state(inventory.StateLastAck), full)},
		{"fin_wait2", sock(1, state(inventory.StateFinWait2), full)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(DefaultConfig())
			tr.Observe(t0, tt.s)
			e, ok := tr.Get(tt.s.Key())
			if !ok {
				t.Fatal("not remembered")
			}
			if diff := socketDiff(*tt.s, e.Socket); diff != "" || !reflect.DeepEqual(*tt.s, e.Socket) {
				t.Errorf("socket (-observed +got):\n%s", diff)
			}
			wantIdle, wantKnown := time.Duration(0), false
			if tt.s.Info.Valid() {
				wantIdle, wantKnown = 100*time.Millisecond, true
			}
			if e.Idle != wantIdle || e.IdleKnown != wantKnown {
				t.Errorf("Idle %v %v, want %v %v", e.Idle, e.IdleKnown, wantIdle, wantKnown)
			}
		})
	}
}

// fuzzInput hands out a fuzzer's bytes as numbers, zeros once they run out.
type fuzzInput []byte

func (b *fuzzInput) bytes(n int) []byte {
	out := make([]byte, n)
	*b = (*b)[copy(out, *b):]
	return out
}
func (b *fuzzInput) u8() uint8   { return b.bytes(1)[0] }
func (b *fuzzInput) u16() uint16 { return binary.LittleEndian.Uint16(b.bytes(2)) }
func (b *fuzzInput) u32() uint32 { return binary.LittleEndian.Uint32(b.bytes(4)) }
func (b *fuzzInput) u64() uint64 { return binary.LittleEndian.Uint64(b.bytes(8)) }

func (b *fuzzInput) addrPort() netip.AddrPort {
	var a netip.Addr
	switch b.u8() % 4 {
	case 1:
		a = netip.AddrFrom4([4]byte(b.bytes(4)))
	case 2:
		a = netip.AddrFrom16([16]byte(b.bytes(16)))
	case 3:
		a = netip.AddrFrom16(netip.AddrFrom4([4]byte(b.bytes(4))).As16()) // v4-mapped
	}
	return netip.AddrPortFrom(a, b.u16())
}

// socket builds a socket the tracker always remembers (CLOSE_WAIT,
// FIN_WAIT2 or LAST_ACK) with every other field taken from the input.
func (b *fuzzInput) socket() *inventory.Socket {
	s := &inventory.Socket{Netns: b.u64(), Cookie: b.u64(), Family: b.u8(),
		State: []inventory.State{inventory.StateCloseWait, inventory.StateFinWait2, inventory.StateLastAck}[b.u8()%3],
		Timer: inventory.Timer(b.u8()), Retrans: b.u8(), Expires: b.u32(), RQueue: b.u32(), WQueue: b.u32(),
		UID: b.u32(), Inode: b.u32(), Ifindex: b.u32(),
		Local: b.addrPort(), Remote: b.addrPort()}
	i := &s.Info
	i.Len, i.State, i.CAState, i.Retransmits, i.Probes = b.u16(), b.u8(), b.u8(), b.u8(), b.u8()
	i.Backoff, i.Options, i.SndWScale, i.RcvWScale = b.u8(), b.u8(), b.u8(), b.u8()
	for _, f := range []*uint32{&i.RTO, &i.SndMSS, &i.RcvMSS, &i.Unacked, &i.Lost, &i.Retrans, &i.LastDataSent,
		&i.LastAckSent, &i.LastDataRecv, &i.LastAckRecv, &i.RTT, &i.RTTVar, &i.SndCwnd, &i.TotalRetrans} {
		*f = b.u32()
	}
	i.SetOptional(b.u64(), b.u64(), b.u32(), b.u32())
	return s
}

// FuzzSocketRoundTrip observes arbitrary sockets, each twice under one key,
// and checks that Get returns each as observed, with its times.
func FuzzSocketRoundTrip(f *testing.F) {
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fuzzInput(data)
		tr := New(DefaultConfig())
		now := t0.Add(time.Duration(in.u32()) * time.Microsecond)
		for range 3 {
			s := in.socket()
			tr.Observe(now, s)
			e, ok := tr.Get(s.Key())
			if !ok {
				t.Fatalf("%s is not remembered", s.State)
			}
			if diff := socketDiff(*s, e.Socket); diff != "" || !reflect.DeepEqual(*s, e.Socket) {
				t.Fatalf("socket (-observed +got):\n%s", diff)
			}
			if idle, known := idleOf(&s.Info); e.Idle != idle || e.IdleKnown != known || e.LastSeen != now {
				t.Fatalf("Idle %v %v LastSeen %v, want %v %v %v", e.Idle, e.IdleKnown, e.LastSeen, idle, known, now)
			}
			now = now.Add(time.Duration(in.u32()) * time.Microsecond)
		}
	})
}

// TestMonotonicTimes checks that times from a clock with monotonic readings
// keep them, and that times in another location come back Equal.
func TestMonotonicTimes(t *testing.T) {
	tr := New(DefaultConfig())
	s := sock(1, state(inventory.StateLastAck))
	start := time.Now()
	tr.Observe(start, s)
	later := start.Add(31 * time.Second)
	if got := tr.Observe(later, s); got != rs(ReasonLastAck) {
		t.Fatalf("reasons %q, want last_ack", got)
	}
	e, _ := tr.Get(s.Key())
	if e.FirstSeen != start || e.LastSeen != later || e.SuspectSince != later || e.StateSince != start {
		t.Errorf("times %v %v %v %v, want %v and %v", e.FirstSeen, e.LastSeen, e.SuspectSince, e.StateSince, start, later)
	}
	if !strings.Contains(e.LastSeen.String(), "m=+") {
		t.Errorf("LastSeen %v lost its monotonic clock reading", e.LastSeen)
	}
	elsewhere := later.Add(time.Second).In(time.FixedZone("x", 3600))
	tr.Observe(elsewhere, s)
	if e, _ = tr.Get(s.Key()); !e.LastSeen.Equal(elsewhere) || e.FirstSeen != start {
		t.Errorf("LastSeen %v FirstSeen %v, want %v and %v", e.LastSeen, e.FirstSeen, elsewhere, start)
	}
}

// TestStoreChurn drives many sockets of a few namespaces, across several
// storage chunks, in and out of the tracker, and compares what it remembers
// with a model.
func TestStoreChurn(t *testing.T) {
	const nsN, cookies = 3, 3*int(chunkLen) + 17
	tr := New(DefaultConfig())
	rnd := rand.New(rand.NewPCG(1, 2))
	type model struct {
		state  inventory.State // 0: not remembered
		misses uint8
		seen   bool // since the namespace's last end
	}
	var want [nsN][cookies + 1]model
	now := t0
	for round := range 40 {
		now = now.Add(15 * time.Second)
		for ns := range uint64(nsN) {
			for c := 1; c <= cookies; c++ {
				m := &want[ns][c]
				switch r := rnd.IntN(10); {
				case r < 3: // skipped by this dump
				case r < 5: // healthy: forgotten
					tr.Observe(now, sock(uint64(c), netns(ns)))
					*m = model{}
				default:
					st := []inventory.State{inventory.StateCloseWait, inventory.StateLastAck, inventory.StateFinWait2}[r%3]
					tr.Observe(now, sock(uint64(c), netns(ns), state(st), timer(inventory.Timer(round%3), 0)))
					*m = model{state: st, seen: true}
				}
			}
			if rnd.IntN(4) > 0 {
				tr.EndNamespace(now, ns)
				for c := range want[ns] {
					m := &want[ns][c]
					if m.state != 0 && !m.seen {
						if m.misses++; m.misses >= 2 {
							*m = model{}
						}
					}
					m.seen = false
				}
			}
		}
		n := 0
		for ns := range uint64(nsN) {
			for c := 1; c <= cookies; c++ {
				m := want[ns][c]
				e, ok := tr.Get(inventory.Key{Netns: ns, Cookie: uint64(c)})
				if ok != (m.state != 0) || ok && (e.Socket.State != m.state || e.Misses != m.misses || e.Socket.Cookie != uint64(c)) {
					t.Fatalf("round %d, %d/%d: got %v %s misses %d, want %s misses %d", round, ns, c, ok, e.Socket.State, e.Misses, m.state, m.misses)
				}
				if ok {
					n++
				}
			}
		}
		if tr.Len() != n {
			t.Fatalf("round %d: Len %d, want %d", round, tr.Len(), n)
		}
	}
}

// TestEachSuspectEntry checks that eachEntry hands out entries equal to
// Get's, in one reused variable.
func TestEachSuspectEntry(t *testing.T) {
	tr := New(DefaultConfig())
	for c := range uint64(20) {
		tr.Observe(t0, sock(c+1, quiet(time.Hour, time.Hour), netns(c%3)))
	}
	seen := map[inventory.Key]bool{}
	var first *Entry
	tr.eachEntry(func(e *Entry) {
		if first == nil {
			first = e
		} else if e != first {
			t.Error("eachEntry allocated another Entry")
		}
		want, _ := tr.getLocked(e.Socket.Key())
		if diff := cmp.Diff(want, *e, cmp.AllowUnexported(inventory.TCPInfo{}), cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
			t.Errorf("eachEntry entry (-Get +eachEntry):\n%s", diff)
		}
		seen[e.Socket.Key()] = true
	})
	if len(seen) != 20 {
		t.Errorf("eachEntry visited %d sockets, want 20", len(seen))
	}
}

// TestObserveAllocs checks that observing a remembered socket again, and
// reading it back, allocates nothing.
func TestObserveAllocs(t *testing.T) {
	tr := New(DefaultConfig())
	s := sock(1, quiet(time.Hour, time.Hour), addrsV6)
	now := t0
	tr.Observe(now, s)
	if n := testing.AllocsPerRun(100, func() {
		now = now.Add(time.Second)
		tr.Observe(now, s)
		tr.Get(s.Key())
	}); n != 0 {
		t.Errorf("Observe and Get of a remembered socket: %v allocations, want 0", n)
	}
}

func addrsV6(s *inventory.Socket) {
	s.Family = inventory.FamilyInet6
	s.Local, s.Remote = netip.MustParseAddrPort("[2001:db8::2]:7000"), netip.MustParseAddrPort("[2001:db8::1]:443")
}
