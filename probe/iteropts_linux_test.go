package probe

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestIterSocketOptions reads the record's option, routing and keepalive
// fields of loopback connections and compares them with what was set, and
// the flow label with the one the kernel puts on the wire.
func TestIterSocketOptions(t *testing.T) {
	r := iterReader(t)
	ns := testnet.NewNS(t, "so")
	lo, err := net.InterfaceByName("lo") // every namespace's lo has index 1
	if err != nil {
		t.Fatal(err)
	}

	t.Run("keepalive and routing set", func(t *testing.T) {
		_, c := optPair(t, ns, ns, "tcp4", "127.0.0.1:0", netip.Addr{}, nil, []sockopt{
			optInt(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1),
			optInt(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 300),
			optInt(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 100),
			optInt(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3),
			optInt(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 5000),
			optInt(unix.SOL_SOCKET, unix.SO_MARK, 0x1234),
			optInt(unix.IPPROTO_IP, unix.IP_TOS, 0xb8|1), // ECN bits are not ours to copy
			optDevice("lo"),
		})
		st := readState(t, r, ns, c)
		if st.KeepTime != 300*time.Second || st.KeepIntvl != 100*time.Second || st.KeepProbes != 3 || st.UserTimeout != 5*time.Second {
			t.Errorf("keepalive %v/%v/%d, user timeout %v; want 5m0s/1m40s/3, 5s", st.KeepTime, st.KeepIntvl, st.KeepProbes, st.UserTimeout)
		}
		if st.Mark != 0x1234 || st.BoundIf != lo.Index || st.TOS != 0xb8 {
			t.Errorf("mark %#x bound %d tos %#x; want 0x1234, %d, 0xb8", st.Mark, st.BoundIf, st.TOS, lo.Index)
		}
		if st.MD5 || st.AO {
			t.Errorf("MD5 %v AO %v on a socket without keys", st.MD5, st.AO)
		}
	})
	t.Run("nothing set", func(t *testing.T) {
		s, c := optPair(t, ns, ns, "tcp4", "127.0.0.1:0", netip.Addr{}, nil, nil)
		for _, conn := range []net.Conn{s, c} {
			st := readState(t, r, ns, conn)
			if st.KeepTime != 0 || st.KeepIntvl != 0 || st.KeepProbes != 0 || st.UserTimeout != 0 ||
				st.Mark != 0 || st.BoundIf != 0 || st.TOS != 0 || st.FlowLabel != 0 {
				t.Errorf("%s: %+v, want every option field zero", conn.LocalAddr(), st)
			}
		}
	})
	t.Run("tcp-md5", func(t *testing.T) {
		lo4 := netip.MustParseAddr("127.0.0.1")
		s, c := optPair(t, ns, ns, "tcp4", "127.0.0.1:0", netip.Addr{}, []sockopt{optMD5(lo4, "ghostd-test")}, []sockopt{optMD5(lo4, "ghostd-test")})
		for _, conn := range []net.Conn{s, c} {
			if st := readState(t, r, ns, conn); !st.MD5 || st.AO || st.Unprobeable() != UnprobeableTCPMD5 {
				t.Errorf("%s: MD5 %v AO %v Unprobeable %q", conn.LocalAddr(), st.MD5, st.AO, st.Unprobeable())
			}
		}
	})

	// IPv6: the traffic class, and the flow label as the kernel sends it.
	capt := captureLo(t, ns)
	for _, tc := range []struct {
		name   string
		sysctl map[string]string
		opts   []sockopt
		auto   bool // an automatic label is expected
	}{
		{name: "auto label", auto: true},
		{name: "opted out", opts: []sockopt{optInt(unix.IPPROTO_IPV6, unix.IPV6_AUTOFLOWLABEL, 0)}},
		{name: "forced over an opt-out", sysctl: map[string]string{"net.ipv6.auto_flowlabels": "3"},
			opts: []sockopt{optInt(unix.IPPROTO_IPV6, unix.IPV6_AUTOFLOWLABEL, 0)}, auto: true},
		{name: "stateless range flag", sysctl: map[string]string{"net.ipv6.flowlabel_state_ranges": "1"}, auto: true},
		{name: "labels off", sysctl: map[string]string{"net.ipv6.auto_flowlabels": "0"}},
	} {
		t.Run("ipv6 "+tc.name, func(t *testing.T) {
			for k, v := range tc.sysctl {
				old := ns.ReadSysctl(t, k)
				ns.Sysctl(t, k, v)
				defer ns.Sysctl(t, k, old)
			}
			opts := append([]sockopt{optInt(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, 0x28)}, tc.opts...)
			_, c := optPair(t, ns, ns, "tcp6", "[::1]:0", netip.Addr{}, nil, opts)
			capt.drain(t)
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			st := readState(t, r, ns, c)
			label, seen := wireLabel(t, capt, iterPort(c.LocalAddr()))
			if !seen {
				t.Fatal("captured no segment from the client")
			}
			if st.TClass != 0x28 {
				t.Errorf("TClass %#x, want 0x28", st.TClass)
			}
			if st.FlowLabel != label || (label != 0) != tc.auto {
				t.Errorf("record says label %#x, the kernel sent %#x (automatic label expected: %v)", st.FlowLabel, label, tc.auto)
			}
			if tc.sysctl["net.ipv6.flowlabel_state_ranges"] == "1" && label&0x80000 == 0 {
				t.Errorf("label %#x lacks the stateless flag", label)
			}
		})
	}
}

// wireLabel returns the flow label of the last IPv6 segment captured on lo
// from port.
func wireLabel(t testing.TB, c *wireCapture, port uint16) (label uint32, seen bool) {
	t.Helper()
	for _, s := range c.drain(t) {
		if s.src.Addr().Is6() && s.src.Port() == port {
			label, seen = s.label, true
		}
	}
	return label, seen
}
