package inventory

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// lookup collects what Each finds.
func lookup(o *Owners, netns uint64, inodes []uint32) map[uint32]Owner {
	out := map[uint32]Owner{}
	o.Each(netns, inodes, func(ino uint32, ow Owner) { out[ino] = ow })
	return out
}

// TestOwnersFakeProc resolves over the fake procfs: the lowest pid holding a
// shared socket wins, units and containers come from its cgroup, only the
// inodes asked for are resolved, and inode 0 never is. Nothing is
// remembered: every call walks /proc (the engine keeps the answers), and a
// call for inode 0 alone walks not at all.
func TestOwnersFakeProc(t *testing.T) {
	o := NewOwners(fakeProc)
	want := map[uint32]Owner{
		1001: {PID: 100, Comm: "nginx", Unit: "docker-" + hexA + ".scope", Container: "0123456789ab"},
		1002: {PID: 101, Comm: "nginx", Unit: "docker-" + hexA + ".scope", Container: "0123456789ab"},
		2001: {PID: 200, Comm: "sleep", Unit: "foo.service"},
		// 1003 is a pipe, 9999 nobody's.
	}
	for i := 1; i <= 2; i++ {
		got := lookup(o, 0, []uint32{1001, 1002, 2001, 1003, 9999, 0, 1001})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Each #%d (-want +got):\n%s", i, diff)
		}
		if o.walks != i {
			t.Errorf("after Each #%d: %d walks, want %d", i, o.walks, i)
		}
	}
	if got := lookup(o, 0, []uint32{0}); len(got) != 0 || o.walks != 2 {
		t.Errorf("Each(0) = %v after %d walks, want nothing and no walk", got, o.walks)
	}
}

// TestOwnersNetns: with a namespace hint, the holder inside the socket's
// namespace wins over a lower pid outside it; without one inside, the walk
// goes on outside.
func TestOwnersNetns(t *testing.T) {
	tests := []struct {
		name  string
		netns uint64
		want  int
	}{
		{"no hint: lowest pid", 0, 42},
		{"hint: holder in the namespace", 4026532200, 200},
		{"hint: nobody inside, lowest outside", 4026532100, 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOwners(fakeProc)
			got := lookup(o, tt.netns, []uint32{2002})
			if got[2002].PID != tt.want || o.walks != 1 {
				t.Errorf("owner of 2002 = %+v after %d walks, want pid %d after 1", got[2002], o.walks, tt.want)
			}
		})
	}
}

// TestOwnersLive attributes a socket to the child process holding it, then
// to nobody once the child is gone. It needs no privilege: the child is ours.
func TestOwnersLive(t *testing.T) {
	h := startHolder(t, false)
	ino := h.socket(t).Inode
	if ino == 0 {
		t.Fatalf("helper's socket %v->%v has no inode", h.local, h.remote)
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	o := NewOwners("")
	got := lookup(o, 0, []uint32{ino})
	if ow := got[ino]; ow.PID != h.Pid() || ow.Comm != strings.TrimSpace(string(comm)) {
		t.Errorf("owner = %+v, want pid %d comm %s", ow, h.Pid(), comm)
	}
	h.Stop()
	if got := lookup(o, 0, []uint32{ino}); len(got) != 0 {
		t.Errorf("owner after the helper exited = %v, want none", got)
	}
}

// BenchmarkOwnersEach measures Each over this machine's /proc, with
// this process holding 1000 loopback connections, against a sock_diag dump
// of the same namespace.
func BenchmarkOwnersEach(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const conns = 1000
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for range conns {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		open = append(open, c, s)
	}
	c, err := Dial(0)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// Only our own sockets: others' may be held where /proc cannot see
	// them (another pid namespace), and would measure the negative cache.
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	var all []uint32
	if _, err := c.Dump(0, AllStates, func(s *Socket) error {
		if s.Inode != 0 && (s.Local.Port() == port || s.Remote.Port() == port) {
			all = append(all, s.Inode)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	fds := 0
	if pids, err := listPIDs("/proc"); err == nil {
		for _, pid := range pids {
			if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
				fds += len(ents)
			}
		}
	}
	few := all[len(all)-10:]
	b.Logf("resolving %d sockets; /proc holds %d fds", len(all), fds)

	b.Run("dump", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Dump(0, AllStates, func(*Socket) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold-all", func(b *testing.B) {
		for b.Loop() {
			lookup(NewOwners(""), 0, all)
		}
	})
	b.Run("cold-10", func(b *testing.B) {
		for b.Loop() {
			lookup(NewOwners(""), 0, few)
		}
	})
	if os.Geteuid() == 0 {
		// A socket held in an anonymous namespace by the newest process:
		// a plain walk reads nearly every fd on the host to find it.
		h := startHolder(b, true)
		hc, err := dialIn(h.Pid())
		if err != nil {
			b.Fatal(err)
		}
		defer hc.Close()
		var ino uint32
		if _, err := hc.Dump(0, StateEstablished.Mask(), func(s *Socket) error {
			if s.Local == h.local {
				ino = s.Inode
			}
			return nil
		}); err != nil || ino == 0 {
			b.Fatalf("helper socket: inode %d, %v", ino, err)
		}
		netns, err := nsInode("/proc/" + strconv.Itoa(h.Pid()) + "/ns/net")
		if err != nil {
			b.Fatal(err)
		}
		b.Run("cold-container", func(b *testing.B) {
			for b.Loop() {
				if lookup(NewOwners(""), 0, []uint32{ino})[ino].PID != h.Pid() {
					b.Fatal("helper socket not attributed")
				}
			}
		})
		b.Run("cold-container-netns", func(b *testing.B) {
			for b.Loop() {
				if lookup(NewOwners(""), netns, []uint32{ino})[ino].PID != h.Pid() {
					b.Fatal("helper socket not attributed")
				}
			}
		})
	}
}

// dialIn opens a sock_diag Conn in pid's namespace.
func dialIn(pid int) (*Conn, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Dial(int(f.Fd()))
}
