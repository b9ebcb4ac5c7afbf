package probe

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
)

func TestGuardKey(t *testing.T) {
	for _, tc := range []struct {
		local, remote string
		seq           uint32
		want          string
	}{
		// remote (the RST's source) . port . local . port, each field
		// padded to 4 bytes, in network byte order; then the sequence
		// number in host byte order.
		{"198.51.100.2:5432", "192.0.2.2:40000", 0x01020304,
			"c0000202" + "9c400000" + "c6336402" + "15380000"},
		{"[2001:db8:2::2]:443", "[2001:db8:1::2]:50000", 0xfffffffe,
			"20010db8000100000000000000000002" + "c3500000" + "20010db8000200000000000000000002" + "01bb0000"},
	} {
		got := hex.EncodeToString(guardKey(netip.MustParseAddrPort(tc.local), netip.MustParseAddrPort(tc.remote), tc.seq))
		if want := tc.want + hex.EncodeToString(binary.NativeEndian.AppendUint32(nil, tc.seq)); got != want {
			t.Errorf("guardKey(%s, %s):\n got %s\nwant %s", tc.local, tc.remote, got, want)
		}
	}
}

// TestGuardRuleset checks the messages' framing: an owner-flagged table,
// two timeout sets whose key length fits the family, one prerouting chain
// before conntrack, two rules, every message acknowledged; and the batch
// around them.
func TestGuardRuleset(t *testing.T) {
	msgs, err := guardRuleset()
	if err != nil {
		t.Fatal(err)
	}
	types := []uint16{nftMsgNewTable, nftMsgNewSet, nftMsgNewSet, nftMsgNewChain, nftMsgNewRule, nftMsgNewRule}
	if len(msgs) != len(types) {
		t.Fatalf("%d messages, want %d", len(msgs), len(types))
	}
	for i, m := range msgs {
		if got := uint16(m.Header.Type); got != nfnlSubsysNFTables<<8|types[i] {
			t.Errorf("message %d type %#x, want %#x", i, got, nfnlSubsysNFTables<<8|types[i])
		}
		if m.Header.Flags&netlink.Acknowledge == 0 || m.Data[0] != nfprotoInet {
			t.Errorf("message %d: flags %v family %d", i, m.Header.Flags, m.Data[0])
		}
	}
	attrs := func(m netlink.Message) map[uint16][]byte {
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint16][]byte{}
		for ad.Next() {
			out[ad.Type()] = ad.Bytes()
		}
		return out
	}
	if a := attrs(msgs[0]); string(a[nftaTableName]) != "ghostd\x00" || hex.EncodeToString(a[nftaTableFlags]) != "00000002" {
		t.Errorf("table attributes %x", a)
	}
	// Key types: nft's datatype ids, 6 bits each: address (7 or 8) .
	// inet_service (13) . address . inet_service . mark (19).
	for i, want := range []struct{ keyLen, keyType string }{{"00000014", "07347353"}, {"0000002c", "08348353"}} { // 20 and 44 bytes
		a := attrs(msgs[1+i])
		if hex.EncodeToString(a[nftaSetKeyLen]) != want.keyLen || hex.EncodeToString(a[nftaSetFlags]) != "00000090" {
			t.Errorf("set %d: key length %x flags %x, want %s and timeout|concat", i, a[nftaSetKeyLen], a[nftaSetFlags], want.keyLen)
		}
		if got := hex.EncodeToString(a[nftaSetKeyType]); got != want.keyType {
			t.Errorf("set %d: key type %s, want %s", i, got, want.keyType)
		}
	}
	b := batch(msgs...)
	if len(b) != len(msgs)+2 || b[0].Header.Type != nfnlMsgBatchBegin || b[len(b)-1].Header.Type != nfnlMsgBatchEnd {
		t.Errorf("batch framing: %d messages", len(b))
	}
	add, err := elemMsg(true, netip.MustParseAddrPort("198.51.100.2:5432"), netip.MustParseAddrPort("192.0.2.2:40000"), 7, 1500*time.Millisecond)
	if err != nil || uint16(add.Header.Type) != nfnlSubsysNFTables<<8|nftMsgNewSetElem || string(attrs(add)[nftaSetElemListSet]) != "rst4\x00" {
		t.Errorf("add element: %v %+v", err, add.Header)
	}
	del, err := elemMsg(false, netip.MustParseAddrPort("[2001:db8:2::2]:443"), netip.MustParseAddrPort("[2001:db8:1::2]:50000"), 7, 0)
	if err != nil || uint16(del.Header.Type) != nfnlSubsysNFTables<<8|nftMsgDelSetElem || string(attrs(del)[nftaSetElemListSet]) != "rst6\x00" {
		t.Errorf("delete element: %v %+v", err, del.Header)
	}
}

// fakeGuard records what is armed.
type fakeGuard struct {
	mu      sync.Mutex
	elems   map[string]time.Duration
	closed  bool
	failAdd bool
}

func (f *fakeGuard) add(local, remote netip.AddrPort, seq uint32, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAdd {
		return errors.New("no")
	}
	f.elems[string(guardKey(local, remote, seq))] = ttl
	return nil
}

func (f *fakeGuard) remove(local, remote netip.AddrPort, seq uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.elems, string(guardKey(local, remote, seq)))
	return nil
}

func (f *fakeGuard) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeGuard) state() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.elems), f.closed
}

// TestGuardPool: one guard per namespace shared by overlapping holders,
// closed guardLinger after the last lets go (reopened if a holder comes
// back sooner), elements removed guardLinger after their probe; a guard
// that cannot open leaves probes unguarded; arm refuses blind and NATed
// probes.
func TestGuardPool(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	opened := 0
	var last *fakeGuard
	p := New(Config{}, nil, log)
	p.guards.linger = guardLinger
	p.guards.open = func(string) (resetGuard, error) {
		opened++
		last = &fakeGuard{elems: map[string]time.Duration{}}
		return last, nil
	}
	cfg := DefaultConfig()
	cfg.ResetGuard = true
	cfg = cfg.withDefaults()
	tgt := Target{NetnsInode: 9, Local: netip.MustParseAddrPort("198.51.100.2:5432"), Remote: netip.MustParseAddrPort("192.0.2.2:40000")}
	st := &SeqState{RcvNxt: 1000}

	r1 := p.guards.hold(true, 9, "/x", log)
	r2 := p.guards.hold(true, 9, "/x", log)
	if opened != 1 {
		t.Fatalf("opened %d guards for one namespace, want 1", opened)
	}
	if _, ok := p.arm(&cfg, tgt, nil, ""); ok {
		t.Error("a blind probe was guarded")
	}
	if _, ok := p.arm(&cfg, tgt, st, NATDNAT); ok {
		t.Error("a NATed probe was guarded")
	}
	off := cfg
	off.ResetGuard = false
	if _, ok := p.arm(&off, tgt, st, ""); ok {
		t.Error("a probe was guarded with the guard off")
	}
	disarm, ok := p.arm(&cfg, tgt, st, "")
	if !ok {
		t.Fatal("an in-window probe was not guarded")
	}
	if n, _ := last.state(); n != 1 || last.elems[string(guardKey(tgt.Local, tgt.Remote, 1000))] != guardTTL(&cfg) {
		t.Errorf("element not armed with its ttl: %v", last.elems)
	}
	disarm()
	if n, _ := last.state(); n != 1 {
		t.Error("the element went at once, not after the linger")
	}
	r1()
	r2()
	if _, closed := last.state(); closed {
		t.Error("the guard closed at once, not after the linger")
	}
	// Back within the linger: the same guard.
	r3 := p.guards.hold(true, 9, "/x", log)
	if opened != 1 {
		t.Errorf("a holder within the linger opened a new guard")
	}
	r3()
	time.Sleep(guardLinger + 500*time.Millisecond)
	if n, closed := last.state(); n != 0 || !closed {
		t.Errorf("after the linger: %d elements, closed %v; want none and closed", n, closed)
	}
	if p.guards.get(9) != nil {
		t.Error("a closed guard is still handed out")
	}

	// A guard that cannot open: nothing is held, probes are unguarded.
	p.guards.open = func(string) (resetGuard, error) { return nil, errors.New("EPERM") }
	release := p.guards.hold(true, 10, "/y", log)
	tgt.NetnsInode = 10
	if _, ok := p.arm(&cfg, tgt, st, ""); ok {
		t.Error("probe guarded without a guard")
	}
	release()
	// A failing add leaves the probe unguarded too.
	p.guards.open = func(string) (resetGuard, error) {
		return &fakeGuard{elems: map[string]time.Duration{}, failAdd: true}, nil
	}
	release = p.guards.hold(true, 10, "/y", log)
	if _, ok := p.arm(&cfg, tgt, st, ""); ok {
		t.Error("probe guarded although its element could not be added")
	}
	release()
	start := time.Now()
	p.Close() // waits for the linger, then closes
	if p.guards.get(10) != nil || time.Since(start) > guardLinger+time.Second {
		t.Errorf("Close left a guard or took %s", time.Since(start))
	}
}
