package inventory

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestReadTCPSysctlsPerNamespace: the sysctls are read in the namespace
// asked for, not in the caller's, and the Scanner hands them to its
// callback and results.
func TestReadTCPSysctlsPerNamespace(t *testing.T) {
	needRoot(t)
	netns := testnet.NewNS(t, "sc")
	name := netns.Name
	for _, kv := range [][2]string{{"net.ipv4.tcp_keepalive_time", "123"}, {"net.ipv4.tcp_keepalive_intvl", "7"}, {"net.ipv4.tcp_keepalive_probes", "4"}, {"net.ipv4.tcp_retries2", "6"}} {
		netns.Sysctl(t, kv[0], kv[1])
	}
	ino := mustNsInode(t, netns.Path)
	ns := Namespace{Inode: ino, Name: name, Path: netns.Path, Kind: KindNamed}
	got, err := ReadTCPSysctls(&ns)
	if err != nil {
		t.Fatal(err)
	}
	want := TCPSysctls{KeepaliveTime: 123 * time.Second, KeepaliveIntvl: 7 * time.Second, KeepaliveProbes: 4, Retries2: 6, Read: true}
	if got != want {
		t.Errorf("namespace %s: %+v, want %+v", name, got, want)
	}
	own, err := readSysctlFiles()
	if err != nil {
		t.Fatal(err)
	}
	if own.KeepaliveTime == 123*time.Second {
		t.Fatal("the caller's namespace has the test's value: cannot tell them apart")
	}
	if self, err := nsInode("/proc/thread-self/ns/net"); err != nil || self == ino {
		t.Fatalf("the calling thread was left in %s (%v)", name, err)
	}

	s := NewScanner(nil, ScannerOptions{Select: func(n Namespace) bool { return n.Inode == ino }})
	defer s.Close()
	res := s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil })
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("scan: %+v", res)
	}
	if res[0].TCP != want {
		t.Errorf("result's sysctls %+v, want %+v", res[0].TCP, want)
	}

	gone := Namespace{Inode: ino + 1, Name: "gone", Path: "/run/netns/" + name}
	if _, err := ReadTCPSysctls(&gone); err == nil {
		t.Error("a path now holding another namespace was read")
	}
}

// BenchmarkReadTCPSysctls measures reading another namespace's sysctls: a
// fresh locked thread, two setns calls and four small files.
func BenchmarkReadTCPSysctls(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates and enters a network namespace")
	}
	netns := testnet.NewNS(b, "sb")
	ino, err := nsInode(netns.Path)
	if err != nil {
		b.Fatal(err)
	}
	ns := Namespace{Inode: ino, Name: netns.Name, Path: netns.Path}
	for b.Loop() {
		if _, err := ReadTCPSysctls(&ns); err != nil {
			b.Fatal(err)
		}
	}
}
