package probe

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestHostHintDecision(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nat       string
		shared    bool
		up        bool
		err       error
		hint      string
		reachable string // "nil", "true", "false"
	}{
		{"host answers", "", false, true, nil, HostHintReachable, "true"},
		{"host silent", "", false, false, nil, HostHintUnreachable, "false"},
		{"NATed in the namespace: no claim", NATDNAT, false, true, nil, HostHintNAT, "nil"},
		{"SNAT too", NATSNAT, true, false, nil, HostHintNAT, "nil"},
		{"a shared address that answers: no claim", "", true, true, nil, HostHintShared, "nil"},
		{"a shared address that does not answer", "", true, false, nil, HostHintUnreachable, "false"},
		{"echo failed", "", false, false, errors.New("EPERM"), "", "nil"},
	} {
		hint, r := hostHint(tc.nat, tc.shared, tc.up, tc.err)
		got := "nil"
		if r != nil {
			got = map[bool]string{true: "true", false: "false"}[*r]
		}
		if hint != tc.hint || got != tc.reachable {
			t.Errorf("%s: hint %q reachable %s, want %q %s", tc.name, hint, got, tc.hint, tc.reachable)
		}
	}
}

func TestHintMemory(t *testing.T) {
	var h hintMemory
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	a := netip.MustParseAddr("192.0.2.2")
	for i := range SharedPorts - 1 {
		h.observe(netip.AddrPortFrom(a, uint16(40000+i)), now)
		h.observe(netip.AddrPortFrom(a, uint16(40000+i)), now) // a port counts once
	}
	if h.shared(a, now) {
		t.Errorf("%d ports made the address shared", SharedPorts-1)
	}
	h.observe(netip.AddrPortFrom(netip.MustParseAddr("::ffff:192.0.2.2"), 50000), now) // v4-mapped is the same address
	if !h.shared(a, now) {
		t.Errorf("%d ports did not make the address shared", SharedPorts)
	}
	if h.shared(netip.MustParseAddr("192.0.2.3"), now) {
		t.Error("another address is shared")
	}
	if h.shared(a, now.Add(sharedWindow+time.Second)) {
		t.Error("still shared after the window")
	}
	h.observe(netip.AddrPortFrom(a, 1), now.Add(sharedWindow+time.Second))
	if h.shared(a, now.Add(sharedWindow+time.Second)) {
		t.Error("an observation after the window kept the old ports")
	}
	for i := range maxHintAddrs + 10 {
		h.observe(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1), now.Add(time.Duration(i)))
	}
	if len(h.addrs) > maxHintAddrs {
		t.Errorf("%d addresses remembered, cap %d", len(h.addrs), maxHintAddrs)
	}
}
