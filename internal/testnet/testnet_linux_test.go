package testnet

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitFor polls cond every 20 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func ownNetns(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestNewNS(t *testing.T) {
	var path string
	t.Run("use", func(t *testing.T) {
		ns := NewNS(t, "tn")
		path = ns.Path
		if !strings.HasPrefix(ns.Name, "gd-tn-") || len(ns.Name) != len("gd-tn-")+8 {
			t.Errorf("name %q, want gd-tn-<8 hex>", ns.Name)
		}
		var inside uint64
		if err := ns.Do(func() error {
			var st unix.Stat_t
			err := unix.Stat("/proc/thread-self/ns/net", &st)
			inside = st.Ino
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if inside != ns.Inode || inside == ownNetns(t) {
			t.Errorf("inside Do the netns inode is %d; want %d (ours is %d)", inside, ns.Inode, ownNetns(t))
		}
		if out := ns.Exec(t, "ip", "-o", "link", "show", "lo"); !strings.Contains(out, "UP") {
			t.Errorf("lo is not up: %s", out)
		}
		want := errors.New("from fn")
		if err := ns.Do(func() error { return want }); err != want {
			t.Errorf("Do returned %v; want fn's error", err)
		}
	})
	if path == "" {
		return // skipped
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after cleanup, stat %s: %v; want not exist", path, err)
	}
}

func TestNet(t *testing.T) {
	hostLoose, hostErr := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_tcp_loose")
	n := New(t)
	if got := n.Router.ReadSysctl(t, "net.netfilter.nf_conntrack_tcp_loose"); got != "0" {
		t.Errorf("router nf_conntrack_tcp_loose = %s, want 0", got)
	}
	if hostErr == nil {
		if now, _ := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_tcp_loose"); string(now) != string(hostLoose) {
			t.Errorf("host nf_conntrack_tcp_loose changed from %q to %q: the sysctl is not per-netns", hostLoose, now)
		}
	}
	for _, dst := range []netip.Addr{n.ServerV4, n.ServerV6} {
		if err := n.Client.Ping(dst, 2*time.Second); err != nil {
			t.Errorf("client ping %s: %v", dst, err)
		}
	}
	if err := n.Server.Ping(n.ClientV4, 2*time.Second); err != nil {
		t.Error(err)
	}
	// No default route: nothing outside the two prefixes is reachable.
	if _, err := n.Client.ExecErr("", "ip", "route", "get", "203.0.113.1"); err == nil {
		t.Error("client has a route to 203.0.113.1; want none")
	}

	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			s, c := n.Pair(t, network)
			sl, sr := Tuple(s)
			cl, cr := Tuple(c)
			if sl != cr || sr != cl {
				t.Fatalf("tuples do not match: server %v-%v client %v-%v", sl, sr, cl, cr)
			}
			want := n.ClientV4
			if network == "tcp6" {
				want = n.ClientV6
			}
			if sr.Addr() != want {
				t.Errorf("server sees peer %v, want %v", sr.Addr(), want)
			}
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			s.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("server read %q, %v", buf, err)
			}
		})
	}

	t.Run("ForgetFlow", func(t *testing.T) {
		for _, network := range []string{"tcp4", "tcp6"} {
			s, c := n.Pair(t, network)
			before := n.ConntrackCount(t)
			if before < 1 {
				t.Fatalf("%s: %d conntrack entries before ForgetFlow; want ≥ 1", network, before)
			}
			drops := n.InvalidDrops(t)
			n.ForgetFlow(t, s)
			if got := n.ConntrackCount(t); got != before-1 {
				t.Fatalf("%s: %d conntrack entries after ForgetFlow; want %d", network, got, before-1)
			}
			if _, err := s.Write([]byte("lost")); err != nil {
				t.Fatal(err)
			}
			if !waitFor(2*time.Second, func() bool { return n.InvalidDrops(t) > drops }) {
				t.Errorf("%s: the router dropped no INVALID segment after ForgetFlow", network)
			}
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if k, err := c.Read(make([]byte, 4)); err == nil {
				t.Errorf("%s: the client read %d bytes through a forgotten flow", network, k)
			}
			if got := n.ConntrackCount(t); got != before-1 {
				t.Errorf("%s: mid-stream data created a conntrack entry (tcp_loose=0): %d entries, want %d", network, got, before-1)
			}
		}
	})

	t.Run("LoseState", func(t *testing.T) {
		for _, network := range []string{"tcp4", "tcp6"} {
			s, c := n.Pair(t, network)
			n.LoseState(t, c)
			if _, err := s.Write([]byte("anyone?")); err != nil {
				t.Fatal(err)
			}
			s.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := s.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("%s: server read after LoseState: %v; want ECONNRESET", network, err)
			}
		}
	})

	t.Run("GoSilent", func(t *testing.T) {
		s, c := n.Pair(t, "tcp4")
		n.GoSilent(t)
		if _, err := s.Write([]byte("hello?")); err != nil {
			t.Fatal(err)
		}
		if !waitFor(2*time.Second, func() bool { i := TCPInfo(t, s); return i.Retransmits > 0 && i.Unacked > 0 }) {
			t.Fatalf("no retransmission while the client is silent: %+v", TCPInfo(t, s))
		}
		if err := n.Client.Ping(n.ServerV4, 300*time.Millisecond); err == nil {
			t.Error("a silent client still pings")
		}
		n.Heal(t)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
			t.Errorf("after Heal the client got no data: %v", err)
		}
	})

	t.Run("DropFromClient", func(t *testing.T) {
		s, c := n.Pair(t, "tcp6")
		other, _ := n.Pair(t, "tcp6")
		n.DropFromClient(t, c)
		if _, err := s.Write([]byte("ack me")); err != nil {
			t.Fatal(err)
		}
		if !waitFor(2*time.Second, func() bool { return TCPInfo(t, s).Retransmits > 0 }) {
			t.Fatalf("no retransmission while the client's ACKs are dropped: %+v", TCPInfo(t, s))
		}
		// Another connection of the same client is untouched.
		if _, err := other.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if !waitFor(time.Second, func() bool { return TCPInfo(t, other).Unacked == 0 }) {
			t.Error("DropFromClient hit another connection")
		}
		n.Heal(t)
		// The server's retransmit timer has backed off (seconds, under load):
		// a segment from the client carries the ACK at once.
		if _, err := c.Write([]byte("y")); err != nil {
			t.Fatal(err)
		}
		if !waitFor(3*time.Second, func() bool { return TCPInfo(t, s).Unacked == 0 }) {
			t.Errorf("after Heal the data is still unacknowledged: %+v", TCPInfo(t, s))
		}
	})
}

// TestCleanup checks that a whole test network, with connections and client
// rules, leaves no namespace and no file descriptor behind.
func TestCleanup(t *testing.T) {
	var names []string
	before := OpenFDs(t)
	t.Run("use", func(t *testing.T) {
		n := New(t)
		names = []string{n.Client.Name, n.Router.Name, n.Server.Name}
		s, c := n.Pair(t, "tcp4")
		n.Pair(t, "tcp6")
		n.DropFromClient(t, c)
		n.GoSilent(t)
		n.ForgetFlow(t, s)
		if err := n.Client.Ping(n.ServerV6, 100*time.Millisecond); err == nil {
			t.Error("a silent client pings")
		}
	})
	if names == nil {
		return // skipped
	}
	for _, name := range names {
		if _, err := os.Stat("/run/netns/" + name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", name, err)
		}
	}
	// The runtime may keep a poller fd open after the first network use.
	if after := OpenFDs(t); after > before+1 {
		t.Errorf("%d file descriptors before, %d after", before, after)
	}
}
