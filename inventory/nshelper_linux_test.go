package inventory

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// nsHelperEnv turns the test binary into a helper process that holds one
// loopback TCP connection: "hold" in the netns it was started in, after
// bringing lo up.
const nsHelperEnv = "GHOSTD_INVENTORY_NS_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(nsHelperEnv) != "" {
		os.Exit(nsHelperMain())
	}
	// Let the runtime open its netpoller fds before counting.
	if r, w, err := os.Pipe(); err == nil {
		_ = r.SetDeadline(time.Now())
		r.Close()
		w.Close()
	}
	before := openFDs()
	code := m.Run()
	if code == 0 {
		if leaks := fdLeaks(before); leaks != "" {
			fmt.Fprintf(os.Stderr, "inventory tests leaked file descriptors: %s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// openFDs maps this process's open fds to what they point at.
func openFDs() map[string]string {
	m := make(map[string]string)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return m
	}
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		m[e.Name()] = target
	}
	return m
}

// fdLeaks lists fds open now that were not open before (the directory read
// itself excepted), waiting briefly for finalizers and closing goroutines.
func fdLeaks(before map[string]string) string {
	var leaks []string
	for range 20 {
		runtime.GC()
		leaks = leaks[:0]
		for fd, target := range openFDs() {
			if old, ok := before[fd]; !ok || old != target {
				if _, err := os.Stat("/proc/self/fd/" + fd); err != nil {
					continue // the ReadDir's own fd, closed by now
				}
				leaks = append(leaks, fd+" -> "+target)
			}
		}
		if len(leaks) == 0 {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(leaks)
	return strings.Join(leaks, ", ")
}

// nsHelperMain holds a loopback connection until stdin closes (or 60 s pass),
// after printing "ready LOCAL REMOTE" for the client side.
func nsHelperMain() int {
	if err := loopbackUp(); err != nil {
		fmt.Fprintln(os.Stderr, "helper: lo up:", err)
		return 1
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	a, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Printf("ready %s %s\n", c.LocalAddr(), c.RemoteAddr())
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
	}
	a.Close()
	c.Close()
	ln.Close()
	return 0
}

// loopbackUp sets lo up in the caller's namespace (a fresh one has it down).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// nsHolder is a helper child process holding a loopback connection.
type nsHolder struct {
	*testnet.Child
	local, remote netip.AddrPort // the client side of its connection
}

// startHolder starts the helper, in a new anonymous netns when newNetns.
func startHolder(t testing.TB, newNetns bool) *nsHolder {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	// atexit_sleep_ms: a race-enabled binary otherwise sleeps 1 s on exit.
	cmd.Env = append(os.Environ(), nsHelperEnv+"=hold", "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if newNetns {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	h := &nsHolder{Child: testnet.StartChild(t, cmd, 5*time.Second)}
	line, err := h.ReadLine()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ready" {
		t.Fatalf("helper said %q", line)
	}
	h.local, h.remote = netip.MustParseAddrPort(f[1]), netip.MustParseAddrPort(f[2])
	return h
}

// socket dumps the caller's namespace and returns the helper's end of its
// connection, failing the test when the dump lacks it.
func (h *nsHolder) socket(t testing.TB) Socket {
	t.Helper()
	c, err := Dial(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sk Socket
	found := false
	if _, err := c.Dump(0, StateEstablished.Mask(), func(s *Socket) error {
		if s.Local == h.local && s.Remote == h.remote {
			sk, found = *s, true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("helper's socket %v->%v not in the dump", h.local, h.remote)
	}
	return sk
}

// startSleeper runs `unshare -n sleep 60`: a process that only holds an
// anonymous namespace, and starts far faster than a race-enabled helper. It
// returns once the namespace exists, and a function that ends the process.
func startSleeper(t *testing.T) (pid int, stop func()) {
	t.Helper()
	cmd := exec.Command("unshare", "-n", "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare -n sleep: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(stop)
	pid = cmd.Process.Pid
	self := mustNsInode(t, "/proc/self/ns/net")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if ino, err := nsInode("/proc/" + strconv.Itoa(pid) + "/ns/net"); err == nil && ino != self {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			if strings.TrimSpace(string(comm)) == "sleep" {
				return pid, stop
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare -n sleep (pid %d) never entered a new namespace", pid)
		}
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates and enters network namespaces")
	}
}

// loopConn is a loopback connection opened inside a namespace.
type loopConn struct {
	ln             net.Listener
	client, server net.Conn
}

func (c *loopConn) Close() {
	c.client.Close()
	c.server.Close()
	c.ln.Close()
}

func (c *loopConn) local() netip.AddrPort  { return c.client.LocalAddr().(*net.TCPAddr).AddrPort() }
func (c *loopConn) remote() netip.AddrPort { return c.client.RemoteAddr().(*net.TCPAddr).AddrPort() }

// loopConnIn opens a loopback connection inside ns, closed at cleanup.
func loopConnIn(t *testing.T, ns *testnet.NS) *loopConn {
	t.Helper()
	var c *loopConn
	if err := ns.Do(func() (err error) {
		c, err = openLoopConn()
		return err
	}); err != nil {
		t.Fatalf("loopback connection in %s: %v", ns.Name, err)
	}
	t.Cleanup(c.Close)
	return c
}

func openLoopConn() (*loopConn, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, err
	}
	server, err := ln.Accept()
	if err != nil {
		client.Close()
		ln.Close()
		return nil, err
	}
	return &loopConn{ln: ln, client: client, server: server}, nil
}
