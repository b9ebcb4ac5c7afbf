package inventory

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
)

// usernsBase is where the test's user namespace maps its uid 0 (and gid 0)
// in the initial one: the kernel uid of a socket its root opens.
const usernsBase = 100000

// startUsernsNetns runs `unshare -U -n sleep 60`, maps uids and gids 0-999
// of its new user namespace to usernsBase.. of the initial one, and returns
// its pid once the mapping is written: the network namespace it holds is
// owned by a user namespace that is not the initial one.
func startUsernsNetns(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("unshare", "-U", "-n", "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare -U -n sleep: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pid := strconv.Itoa(cmd.Process.Pid)
	self := statInode(t, "/proc/self/ns/user")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		var st unix.Stat_t
		err := unix.Stat("/proc/"+pid+"/ns/user", &st)
		if err == nil && st.Ino != self && string(comm) == "sleep\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare -U -n sleep (pid %s) never entered a new user namespace", pid)
		}
	}
	mapping := fmt.Sprintf("0 %d 1000\n", usernsBase)
	for _, f := range []struct{ name, text string }{{"uid_map", mapping}, {"setgroups", "deny"}, {"gid_map", mapping}} {
		if err := os.WriteFile("/proc/"+pid+"/"+f.name, []byte(f.text), 0); err != nil {
			t.Fatalf("write %s of pid %s: %v", f.name, pid, err)
		}
	}
	return cmd.Process.Pid
}

// statInode returns the inode of path.
func statInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// netnsOwner returns the inode of the user namespace that owns the network
// namespace of pid (NS_GET_USERNS).
func netnsOwner(t *testing.T, pid int) uint64 {
	t.Helper()
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	owner, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS: %v", err)
	}
	defer unix.Close(owner)
	var st unix.Stat_t
	if err := unix.Fstat(owner, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// loopConnAs opens a loopback connection in the network namespace of pid
// with sockets owned by the kernel uid kuid: the locked thread enters the
// namespace, brings lo up, and opens the sockets with that effective uid
// (x/sys/unix's Setresuid changes the calling thread only). The thread is
// discarded afterwards.
func loopConnAs(t *testing.T, pid, kuid int) *loopConn {
	t.Helper()
	var c *loopConn
	var err error
	nsthread.Locked(func() bool {
		var fd int
		if fd, err = unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return false
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return false
		}
		if err = loopbackUp(); err != nil {
			return false
		}
		if err = unix.Setresuid(-1, kuid, -1); err != nil {
			return false
		}
		c, err = openLoopConn()
		if e := unix.Setresuid(-1, 0, -1); err == nil {
			err = e
		}
		return false
	})
	if err != nil {
		t.Fatalf("loopback connection as uid %d in pid %d's namespace: %v", kuid, pid, err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestWalkUIDInUserNamespace: in a network namespace owned by a user
// namespace other than the initial one, a socket opened by that namespace's
// root (kernel uid usernsBase) has the same uid from the walk and from
// sock_diag. sock_diag maps the uid into the user namespace of whoever
// opened the netlink socket (inet_diag's sk_user_ns(NETLINK_CB(skb).sk)),
// not into the network namespace's owner, and ghostd opens its netlink
// sockets in the initial user namespace, which is what the walk reports.
func TestWalkUIDInUserNamespace(t *testing.T) {
	needRoot(t)
	pid := startUsernsNetns(t)
	if owner := netnsOwner(t, pid); owner == statInode(t, "/proc/self/ns/user") {
		t.Fatal("the test's network namespace is owned by the initial user namespace")
	}
	netns := mustNsInode(t, fmt.Sprintf("/proc/%d/ns/net", pid))
	walk, diag := walkAndDiag(t, func(ns Namespace) bool { return ns.Inode == netns })

	c := loopConnAs(t, pid, usernsBase)
	scanKeyed(t, walk, SourceSockDiag) // the namespace's first scan is a dump
	viaDiag := scanKeyed(t, diag, SourceSockDiag)
	viaWalk := scanKeyed(t, walk, SourceWalk)

	compared := 0
	for k, d := range viaDiag {
		if d.Local != c.local() && d.Local != c.remote() {
			continue // the listener and the two ends of c only
		}
		compared++
		w, ok := viaWalk[k]
		if !ok {
			t.Errorf("%s %v -> %v: listed by sock_diag, not by the walk", d.State, d.Local, d.Remote)
			continue
		}
		if d.UID != usernsBase || w.UID != usernsBase {
			t.Errorf("%s %v -> %v: uid %d by sock_diag, %d by the walk; want %d for both (uid 0 in the namespace's owner)",
				d.State, d.Local, d.Remote, d.UID, w.UID, usernsBase)
		}
	}
	if compared != 3 {
		t.Errorf("%d sockets compared, want the listener and the connection's 2 ends", compared)
	}
}
