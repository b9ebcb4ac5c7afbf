package inventory

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
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

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
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
	pid           int
	local, remote netip.AddrPort // the client side of its connection
	cmd           *exec.Cmd
	stdin         io.WriteCloser
	once          sync.Once
}

// startHolder starts the helper, in a new anonymous netns when newNetns.
func startHolder(t testing.TB, newNetns bool) *nsHolder {
	t.Helper()
	return startHolderIn(t, newNetns, -1)
}

// startHolderIn starts the helper, also in the cgroup2 directory cgroupFD
// refers to when that is not -1.
func startHolderIn(t testing.TB, newNetns bool, cgroupFD int) *nsHolder {
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
	if cgroupFD != -1 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cgroupFD
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	h := &nsHolder{pid: cmd.Process.Pid, cmd: cmd, stdin: stdin}
	t.Cleanup(h.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
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

// stop ends the helper and reaps it; safe to call twice.
func (h *nsHolder) stop() {
	h.once.Do(func() {
		h.stdin.Close()
		done := make(chan struct{})
		go func() { _ = h.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = h.cmd.Process.Kill()
			<-done
		}
	})
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

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// addNamedNetns creates /run/netns/NAME with lo up and removes it at cleanup.
func addNamedNetns(t *testing.T, name string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { delNamedNetns(name) })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
}

func delNamedNetns(name string) {
	if _, err := os.Stat("/run/netns/" + name); err == nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
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

// openLoopConnIn opens a loopback connection inside the namespace at path,
// from a locked thread that returns to its namespace afterwards.
func openLoopConnIn(t *testing.T, path string) *loopConn {
	t.Helper()
	type res struct {
		c   *loopConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: err}
			return
		}
		c, err := openLoopConn()
		if rerr := netns.Set(orig); rerr != nil {
			// The thread is in the wrong namespace: leave it locked so the
			// runtime discards it.
			ch <- res{err: fmt.Errorf("restore netns: %w", rerr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- res{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("loopback connection in %s: %v", path, r.err)
	}
	t.Cleanup(r.c.Close)
	return r.c
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

// seenSocket is what a test scan callback records.
type seenSocket struct {
	nsName  string
	nsInode uint64
	inode   uint32
	cookie  uint64
	sk      Socket
}

// scanAll scans and indexes the sockets by client 4-tuple.
func scanAll(t *testing.T, s *Scanner, fn func(ns *Namespace, sk *Socket)) (map[[2]netip.AddrPort]seenSocket, []NamespaceResult) {
	t.Helper()
	seen := make(map[[2]netip.AddrPort]seenSocket)
	res := s.Scan(context.Background(), AllStates, func(ns *Namespace, sk *Socket) error {
		seen[[2]netip.AddrPort{sk.Local, sk.Remote}] = seenSocket{ns.Name, ns.Inode, sk.Inode, sk.Cookie, *sk}
		if fn != nil {
			fn(ns, sk)
		}
		return nil
	})
	return seen, res
}

func resultFor(res []NamespaceResult, ino uint64) (NamespaceResult, bool) {
	for _, r := range res {
		if r.Inode == ino {
			return r, true
		}
	}
	return NamespaceResult{}, false
}

func mustNsInode(t *testing.T, path string) uint64 {
	t.Helper()
	ino, err := nsInode(path)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// TestScanOwnNamespace needs no privilege: the caller's own namespace is
// dumped without setns.
func TestScanOwnNamespace(t *testing.T) {
	self := mustNsInode(t, "/proc/self/ns/net")
	c, err := openLoopConn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewScanner(nil, ScannerOptions{Select: func(ns Namespace) bool { return ns.Inode == self }})
	defer s.Close()
	seen, res := scanAll(t, s, nil)
	if len(res) != 1 || res[0].Inode != self || res[0].Err != nil {
		t.Fatalf("results %+v, want one for our own namespace %d without error", res, self)
	}
	got, ok := seen[[2]netip.AddrPort{c.local(), c.remote()}]
	if !ok || got.nsInode != self {
		t.Fatalf("client socket %v->%v: found %v in netns %d, want netns %d", c.local(), c.remote(), ok, got.nsInode, self)
	}
	if res[0].Sockets < 3 {
		t.Errorf("result counts %d sockets, want at least the 3 of the connection", res[0].Sockets)
	}
	sk := got.sk
	again, ok, err := s.Lookup(&sk)
	if err != nil || !ok || again.Cookie != sk.Cookie {
		t.Errorf("Lookup = cookie %d, %v, %v; want cookie %d", again.Cookie, ok, err, sk.Cookie)
	}
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		again, ok, err = s.Lookup(&sk)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || again.State != StateEstablished || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok && again.State == StateEstablished {
		t.Errorf("Lookup after close still finds it ESTABLISHED")
	}
	sk.Netns = 1
	if _, _, err := s.Lookup(&sk); !errors.Is(err, ErrUnknownNamespace) {
		t.Errorf("Lookup in an unknown namespace: err = %v, want ErrUnknownNamespace", err)
	}
}

// TestScanNamespaces: a named and an anonymous namespace, each with a
// loopback connection: each socket is attributed to its namespace (inode and
// name) and to the process that holds it.
func TestScanNamespaces(t *testing.T) {
	needRoot(t)
	name := "gd-ns-" + randHex(4)
	addNamedNetns(t, name)
	named := openLoopConnIn(t, "/run/netns/"+name)
	namedIno := mustNsInode(t, "/run/netns/"+name)

	h := startHolder(t, true)
	anonIno := mustNsInode(t, "/proc/"+strconv.Itoa(h.pid)+"/ns/net")
	hostIno, err := nsInode("/proc/1/ns/net")
	if err != nil { // pid 1 out of reach (a sandbox): our own stands in
		hostIno = mustNsInode(t, "/proc/self/ns/net")
	}
	if anonIno == namedIno || anonIno == hostIno || namedIno == hostIno {
		t.Fatalf("namespaces not distinct: host %d named %d anon %d", hostIno, namedIno, anonIno)
	}

	s := NewScanner(nil, ScannerOptions{Select: func(ns Namespace) bool {
		return ns.Kind == KindHost || ns.Inode == namedIno || ns.Inode == anonIno
	}})
	defer s.Close()
	seen, res := scanAll(t, s, nil)
	if len(res) != 3 {
		t.Fatalf("got %d results, want host, named, anonymous: %+v", len(res), res)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Errorf("netns %s: %v", r.Name, r.Err)
		}
	}

	// The named one.
	r, _ := resultFor(res, namedIno)
	if r.Name != name || r.Kind != KindNamed || r.Path != "/run/netns/"+name {
		t.Errorf("named result %+v, want name %s kind named", r.Namespace, name)
	}
	gotNamed, ok := seen[[2]netip.AddrPort{named.local(), named.remote()}]
	if !ok || gotNamed.nsInode != namedIno || gotNamed.nsName != name || gotNamed.sk.Netns != namedIno {
		t.Errorf("named socket: found %v as %+v, want netns %s (%d)", ok, gotNamed, name, namedIno)
	}

	// The anonymous one, named after its holder.
	r, _ = resultFor(res, anonIno)
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(h.pid) + "/comm")
	wantName := "pid-" + strings.TrimSpace(string(comm)) + "-" + strconv.Itoa(h.pid)
	if cg, err := os.ReadFile("/proc/" + strconv.Itoa(h.pid) + "/cgroup"); err == nil {
		if _, c := ParseCgroup(cg); c != "" { // CI inside a container
			wantName = c
		}
	}
	if r.Name != wantName || r.Kind != KindProcess || r.PID != h.pid {
		t.Errorf("anonymous result %+v, want name %s, pid %d", r.Namespace, wantName, h.pid)
	}
	gotAnon, ok := seen[[2]netip.AddrPort{h.local, h.remote}]
	if !ok || gotAnon.nsInode != anonIno || gotAnon.nsName != wantName {
		t.Errorf("anonymous socket: found %v as %+v, want netns %s (%d)", ok, gotAnon, wantName, anonIno)
	}
	if got := s.Namespaces(); len(got) < 3 {
		t.Errorf("Namespaces() = %d, want at least 3", len(got))
	}

	// Owners: the named one is ours, the anonymous one the helper's.
	o := NewOwners("/proc")
	owners := lookup(o, 0, []uint32{gotNamed.inode, gotAnon.inode, 0})
	self, _ := os.ReadFile("/proc/self/comm")
	want := map[uint32]int{gotNamed.inode: os.Getpid(), gotAnon.inode: h.pid}
	for ino, pid := range want {
		ow, ok := owners[ino]
		if !ok || ow.PID != pid || ow.Comm != strings.TrimSpace(string(self)) {
			t.Errorf("owner of inode %d = %+v (%v), want pid %d comm %s", ino, ow, ok, pid, self)
		}
	}
	if _, ok := owners[0]; ok || len(owners) != 2 {
		t.Errorf("Resolve returned %v, want exactly the two inodes", owners)
	}

	// Lookup and Destroy go through the socket's own namespace.
	sk := gotNamed.sk
	if got, ok, err := s.Lookup(&sk); err != nil || !ok || got.Cookie != sk.Cookie {
		t.Errorf("Lookup in %s: %v, %v", name, ok, err)
	}
	ska := gotAnon.sk
	if err := s.Destroy(&ska); err != nil && !errors.Is(err, ErrDestroyUnsupported) {
		t.Errorf("Destroy in the anonymous namespace: %v", err)
	} else if err == nil {
		if _, ok, err := s.Lookup(&ska); err != nil || ok {
			t.Errorf("after Destroy, Lookup = %v, %v; want gone", ok, err)
		}
	}
}

// TestScanNamespaceVanishes: namespaces that vanish mid-scan (deleted, or
// their holder exits) fail alone, their Conns are closed, and they are not
// listed any more; the others are scanned.
func TestScanNamespaceVanishes(t *testing.T) {
	needRoot(t)
	prefix := "gd-ns-" + randHex(4)
	a, b, c := prefix+"a", prefix+"b", prefix+"c"
	for _, n := range []string{a, b, c} {
		addNamedNetns(t, n)
	}
	ca := openLoopConnIn(t, "/run/netns/"+a)
	cb := openLoopConnIn(t, "/run/netns/"+b)
	h := startHolder(t, true)
	anonIno := mustNsInode(t, "/proc/"+strconv.Itoa(h.pid)+"/ns/net")
	inos := map[string]uint64{}
	for _, n := range []string{a, b, c} {
		inos[n] = mustNsInode(t, "/run/netns/"+n)
	}
	// One at a time: the namespaces vanish while an earlier one is dumped.
	s := NewScanner(nil, ScannerOptions{Workers: 1, Select: func(ns Namespace) bool {
		return strings.HasPrefix(ns.Name, prefix) || ns.Inode == anonIno
	}})
	defer s.Close()

	// First scan: everything is there; the Conns stay open.
	seen, res := scanAll(t, s, nil)
	if len(res) != 4 {
		t.Fatalf("first scan: %d results, want 4: %+v", len(res), res)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("first scan: netns %s: %v", r.Name, r.Err)
		}
	}
	if _, ok := seen[[2]netip.AddrPort{cb.local(), cb.remote()}]; !ok {
		t.Fatal("first scan: socket in b not found")
	}

	// Second scan: while a's sockets are being dumped, b is deleted and the
	// anonymous namespace's holder exits; c vanishes between listing and
	// dumping.
	var once sync.Once
	s.before = func(ns *Namespace) {
		if ns.Name == c {
			delNamedNetns(c)
		}
	}
	seen, res = scanAll(t, s, func(ns *Namespace, sk *Socket) {
		if ns.Name == a {
			once.Do(func() {
				delNamedNetns(b)
				h.stop()
			})
		}
	})
	s.before = nil
	if len(res) != 4 {
		t.Fatalf("second scan: %d results, want 4: %+v", len(res), res)
	}
	for _, r := range res {
		switch {
		case r.Name == a:
			if r.Err != nil {
				t.Errorf("netns %s: %v, want success", a, r.Err)
			}
		case !errors.Is(r.Err, ErrNamespaceGone):
			t.Errorf("netns %s (%s): err = %v, want ErrNamespaceGone", r.Name, r.Kind, r.Err)
		}
	}
	if got, ok := seen[[2]netip.AddrPort{ca.local(), ca.remote()}]; !ok || got.nsInode != inos[a] {
		t.Errorf("second scan: socket in a: %v %+v", ok, got)
	}
	if _, ok := seen[[2]netip.AddrPort{cb.local(), cb.remote()}]; ok {
		t.Errorf("second scan reported b's socket after b was deleted")
	}
	// b's, c's and the anonymous namespace's Conns are closed (TestScanFDsFlat
	// counts the fds).
	for _, ino := range []uint64{inos[b], inos[c], anonIno} {
		s.mu.Lock()
		e := s.entries[ino]
		s.mu.Unlock()
		if e != nil && e.conn != nil {
			t.Errorf("netns inode %d vanished but its Conn is still open", ino)
		}
	}

	// Third scan: only a is left.
	_, res = scanAll(t, s, nil)
	if len(res) != 1 || res[0].Name != a || res[0].Err != nil {
		t.Errorf("third scan: %+v, want a alone, without error", res)
	}
}

// TestScanFDsFlat: namespaces come and go between 20 scans; the Scanner's fd
// count does not grow.
func TestScanFDsFlat(t *testing.T) {
	needRoot(t)
	prefix := "gd-ns-" + randHex(4)
	var mu sync.Mutex
	pids := map[int]bool{}
	s := NewScanner(nil, ScannerOptions{Select: func(ns Namespace) bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.HasPrefix(ns.Name, prefix) || pids[ns.PID]
	}})
	defer s.Close()
	_ = s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil })
	base := countFDs(t)
	for i := range 20 {
		name := prefix + "-" + strconv.Itoa(i)
		addNamedNetns(t, name)
		pid, stop := startSleeper(t)
		mu.Lock()
		pids[pid] = true
		mu.Unlock()
		res := s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil })
		if len(res) != 2 {
			t.Fatalf("scan %d: %d results, want the named and the anonymous namespace: %+v", i, len(res), res)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("scan %d: netns %s: %v", i, r.Name, r.Err)
			}
		}
		delNamedNetns(name)
		stop()
		_ = s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil })
		if got := countFDs(t); got != base {
			t.Fatalf("scan %d: %d fds open, want %d as before the namespaces came and went", i, got, base)
		}
	}
}

// BenchmarkScanWorkers compares dumping namespaces one after another with two
// at a time, on 8 empty namespaces next to one holding 8000 loopback
// connections: every dump walks the shared TCP hash, the cost that
// parallelism splits across the cores.
func BenchmarkScanWorkers(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates network namespaces")
	}
	prefix := "gd-ns-" + randHex(4)
	var names []string
	for i := range 9 {
		name := prefix + "-" + strconv.Itoa(i)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add: %v: %s", err, out)
		}
		names = append(names, name)
	}
	defer func() {
		for _, n := range names {
			delNamedNetns(n)
		}
	}()
	if out, err := exec.Command("ip", "-n", names[0], "link", "set", "lo", "up").CombinedOutput(); err != nil {
		b.Fatalf("lo up: %v: %s", err, out)
	}
	const conns = 8000
	closeAll, err := manyLoopConnsIn("/run/netns/"+names[0], conns)
	if err != nil {
		b.Fatal(err)
	}
	defer closeAll()
	for _, workers := range []int{1, 2} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			s := NewScanner(nil, ScannerOptions{Workers: workers, Select: func(ns Namespace) bool { return strings.HasPrefix(ns.Name, prefix) }})
			defer s.Close()
			for b.Loop() {
				n := 0
				for _, r := range s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil }) {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
					n += r.Sockets
				}
				if n < 2*conns {
					b.Fatalf("%d sockets, want at least %d", n, 2*conns)
				}
			}
		})
	}
}

// manyLoopConnsIn opens n loopback connections inside the namespace at path.
func manyLoopConnsIn(path string, n int) (func(), error) {
	var all []io.Closer
	closeAll := func() {
		for _, c := range all {
			c.Close()
		}
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = func() error {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			all = append(all, ln)
			for range n {
				c, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					return err
				}
				a, err := ln.Accept()
				if err != nil {
					c.Close()
					return err
				}
				all = append(all, c, a)
			}
			return nil
		}()
		if rerr := netns.Set(orig); rerr != nil {
			errc <- fmt.Errorf("restore netns: %w", rerr) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		closeAll()
		return nil, err
	}
	return closeAll, nil
}

// nsFakeConn is a Conn that returns scripted sockets.
type nsFakeConn struct {
	ns      *nsFakeKernel
	ino     uint64
	closed  bool
	dumpErr error
}

func (c *nsFakeConn) Dump(netns uint64, states StateMask, fn func(*Socket) error) (int, error) {
	if c.dumpErr != nil {
		return 0, c.dumpErr
	}
	n := 0
	for i := range c.ns.sockets[c.ino] {
		sk := Socket{Netns: netns, Cookie: uint64(i + 1), State: StateEstablished}
		if err := fn(&sk); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (c *nsFakeConn) Lookup(netns uint64, s *Socket) (Socket, bool, error) {
	return *s, int(s.Cookie) <= c.ns.sockets[c.ino], nil
}

func (c *nsFakeConn) Destroy(s *Socket) error { return nil }

func (c *nsFakeConn) Close() error {
	c.ns.mu.Lock()
	defer c.ns.mu.Unlock()
	c.closed = true
	c.ns.open--
	return nil
}

// nsFakeKernel scripts namespaces for a Scanner: which exist, how many sockets
// each holds, which cannot be entered.
type nsFakeKernel struct {
	mu      sync.Mutex
	nss     []Namespace
	sockets map[uint64]int
	denied  map[uint64]bool
	open    int // Conns not yet closed
	dials   int
	listErr error
}

func (k *nsFakeKernel) scanner(opts ScannerOptions) *Scanner {
	s := NewScanner(nil, opts)
	s.list = func() ([]Namespace, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		return slices.Clone(k.nss), k.listErr
	}
	s.inode = func(path string) (uint64, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, ns := range k.nss {
			if ns.Path == path {
				return ns.Inode, nil
			}
		}
		return 0, &os.PathError{Op: "readlink", Path: path, Err: syscall.ENOENT}
	}
	s.dial = func(ns *Namespace) (nsConn, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.denied[ns.Inode] {
			return nil, os.NewSyscallError("setns", syscall.EPERM)
		}
		k.dials++
		k.open++
		return &nsFakeConn{ns: k, ino: ns.Inode}, nil
	}
	return s
}

func (k *nsFakeKernel) remove(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nss = slices.DeleteFunc(k.nss, func(ns Namespace) bool { return ns.Name == name })
}

type nsFakeResult struct {
	Name    string
	Sockets int
	Err     string
}

func nsFakeScan(s *Scanner) []nsFakeResult {
	var out []nsFakeResult
	for _, r := range s.Scan(context.Background(), AllStates, func(*Namespace, *Socket) error { return nil }) {
		fr := nsFakeResult{Name: r.Name, Sockets: r.Sockets}
		switch {
		case errors.Is(r.Err, ErrNamespaceGone):
			fr.Err = "gone"
		case errors.Is(r.Err, syscall.EPERM):
			fr.Err = "EPERM"
		case r.Err != nil:
			fr.Err = r.Err.Error()
		}
		out = append(out, fr)
	}
	return out
}

// TestScannerFake covers the Scanner's bookkeeping without privilege: Conns
// are reused across scans, a namespace that cannot be entered fails alone, a
// vanished one fails once and its Conn is closed, Select filters.
func TestScannerFake(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run("workers="+strconv.Itoa(workers), func(t *testing.T) {
			k := &nsFakeKernel{
				nss: []Namespace{
					{Inode: 1, Name: "host", Path: "/p/1", Kind: KindHost},
					{Inode: 2, Name: "blue", Path: "/r/blue", Kind: KindNamed},
					{Inode: 3, Name: "pid-x-30", Path: "/p/30", Kind: KindProcess, PID: 30},
					{Inode: 4, Name: "locked", Path: "/p/40", Kind: KindProcess, PID: 40},
				},
				sockets: map[uint64]int{1: 5, 2: 2, 3: 1},
				denied:  map[uint64]bool{4: true},
			}
			s := k.scanner(ScannerOptions{Workers: workers})
			want := []nsFakeResult{{"host", 5, ""}, {"blue", 2, ""}, {"pid-x-30", 1, ""}, {"locked", 0, "EPERM"}}
			for i := range 3 {
				if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
					t.Fatalf("scan %d (-want +got):\n%s", i, diff)
				}
			}
			if k.dials != 3 || k.open != 3 {
				t.Errorf("%d dials, %d open after 3 scans; want 3 Conns dialled once and kept", k.dials, k.open)
			}

			// blue vanishes between listing and dumping.
			s.before = func(ns *Namespace) {
				if ns.Name == "blue" {
					k.remove("blue")
				}
			}
			want = []nsFakeResult{{"host", 5, ""}, {"blue", 0, "gone"}, {"pid-x-30", 1, ""}, {"locked", 0, "EPERM"}}
			if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
				t.Errorf("scan with blue vanishing (-want +got):\n%s", diff)
			}
			s.before = nil
			if k.open != 2 {
				t.Errorf("%d Conns open, want 2 after blue vanished", k.open)
			}
			// pid 30 exits before the next listing.
			k.remove("pid-x-30")
			want = []nsFakeResult{{"host", 5, ""}, {"locked", 0, "EPERM"}}
			if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
				t.Errorf("scan after pid 30 exited (-want +got):\n%s", diff)
			}
			if k.open != 1 {
				t.Errorf("%d Conns open, want 1", k.open)
			}
			if got := len(s.Namespaces()); got != 2 {
				t.Errorf("Namespaces() has %d, want 2", got)
			}
			// Lookup uses the namespace's Conn; unknown namespaces fail.
			if _, ok, err := s.Lookup(&Socket{Netns: 1, Cookie: 5}); !ok || err != nil {
				t.Errorf("Lookup in host = %v, %v", ok, err)
			}
			if _, _, err := s.Lookup(&Socket{Netns: 3, Cookie: 1}); !errors.Is(err, ErrUnknownNamespace) {
				t.Errorf("Lookup in a vanished namespace: %v, want ErrUnknownNamespace", err)
			}
			if err := s.Destroy(&Socket{Netns: 4}); !errors.Is(err, syscall.EPERM) {
				t.Errorf("Destroy in a namespace that cannot be entered: %v, want EPERM", err)
			}
			if err := s.Close(); err != nil || k.open != 0 {
				t.Errorf("Close = %v with %d Conns open", err, k.open)
			}
			if _, _, err := s.Lookup(&Socket{Netns: 1}); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Lookup after Close: %v", err)
			}
		})
	}
}

// TestScannerFakeSelectAndErrors: Select limits what is dialled, a dump error
// drops the Conn so the next scan dials afresh, a callback error ends only its
// namespace, a cancelled context ends the scan, listing errors are kept.
func TestScannerFakeSelectAndErrors(t *testing.T) {
	k := &nsFakeKernel{
		nss: []Namespace{
			{Inode: 1, Name: "host", Path: "/p/1", Kind: KindHost},
			{Inode: 2, Name: "blue", Path: "/r/blue", Kind: KindNamed},
			{Inode: 3, Name: "red", Path: "/r/red", Kind: KindNamed},
		},
		sockets: map[uint64]int{1: 5, 2: 2, 3: 3},
		listErr: errors.New("inventory: list process namespaces: permission denied"),
	}
	s := k.scanner(ScannerOptions{Workers: 1, Select: func(ns Namespace) bool { return ns.Kind == KindNamed }})
	defer s.Close()
	want := []nsFakeResult{{"blue", 2, ""}, {"red", 3, ""}}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
		t.Errorf("selected scan (-want +got):\n%s", diff)
	}
	if k.dials != 2 {
		t.Errorf("%d dials, want 2: the host is not selected", k.dials)
	}
	if err := s.ListError(); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("ListError = %v", err)
	}

	// A broken Conn is closed and replaced on the next scan.
	s.mu.Lock()
	s.entries[2].conn.(*nsFakeConn).dumpErr = syscall.ENOBUFS
	s.mu.Unlock()
	got := nsFakeScan(s)
	if got[0].Err == "" || !strings.Contains(got[0].Err, "dump netns blue") || got[1].Err != "" {
		t.Errorf("scan with a broken Conn: %+v", got)
	}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" || k.dials != 3 {
		t.Errorf("scan after the broken Conn (%d dials, want 3) (-want +got):\n%s", k.dials, diff)
	}

	// A callback error ends its namespace only, and keeps the Conn.
	stop := errors.New("stop")
	res := s.Scan(context.Background(), AllStates, func(ns *Namespace, sk *Socket) error {
		if ns.Name == "blue" {
			return stop
		}
		return nil
	})
	if !errors.Is(res[0].Err, stop) || res[1].Err != nil || res[1].Sockets != 3 || k.dials != 3 {
		t.Errorf("callback error: %+v, %d dials", res, k.dials)
	}

	// A cancelled context: every namespace reports it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, r := range s.Scan(ctx, AllStates, func(*Namespace, *Socket) error { return nil }) {
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("netns %s with a cancelled context: %v", r.Name, r.Err)
		}
	}
}

// TestScannerNamesAreNeverStolen: a namespace keeps its name while it
// exists. One that appears later under a name in use (another user's
// namespace named like a container, listed first because its pid is lower)
// gets "-INODE"; a pid- fallback name gives way to a container id.
func TestScannerNamesAreNeverStolen(t *testing.T) {
	k := &nsFakeKernel{
		nss: []Namespace{
			{Inode: 1, Name: "host", Path: "/p/1", Kind: KindHost},
			{Inode: 3, Name: "0123456789ab", Path: "/p/30", Kind: KindProcess, PID: 30},
			{Inode: 4, Name: "pid-pause-40", Path: "/p/40", Kind: KindProcess, PID: 40},
		},
		sockets: map[uint64]int{1: 1, 2: 1, 3: 1, 4: 1},
	}
	s := k.scanner(ScannerOptions{Workers: 1})
	want := []nsFakeResult{{"host", 1, ""}, {"0123456789ab", 1, ""}, {"pid-pause-40", 1, ""}}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
		t.Fatalf("first scan (-want +got):\n%s", diff)
	}
	// A newcomer with a lower pid: the listing names it first.
	k.mu.Lock()
	k.nss = []Namespace{
		{Inode: 1, Name: "host", Path: "/p/1", Kind: KindHost},
		{Inode: 2, Name: "0123456789ab", Path: "/p/20", Kind: KindProcess, PID: 20},
		{Inode: 3, Name: "0123456789ab-3", Path: "/p/30", Kind: KindProcess, PID: 30},
		{Inode: 4, Name: "fedcba987654", Path: "/p/40", Kind: KindProcess, PID: 40},
	}
	k.mu.Unlock()
	want = []nsFakeResult{{"host", 1, ""}, {"0123456789ab-2", 1, ""}, {"0123456789ab", 1, ""}, {"fedcba987654", 1, ""}}
	if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
		t.Errorf("after a newcomer (-want +got):\n%s", diff)
	}
	names := map[uint64]string{}
	for _, ns := range s.Namespaces() {
		names[ns.Inode] = ns.Name
	}
	if names[3] != "0123456789ab" || names[2] != "0123456789ab-2" {
		t.Errorf("Namespaces() %v", names)
	}
}

// TestScannerMaxNamespaces: past the cap, the last namespaces in listing
// order are skipped, counted, and said once.
func TestScannerMaxNamespaces(t *testing.T) {
	k := &nsFakeKernel{
		nss: []Namespace{
			{Inode: 1, Name: "host", Path: "/p/1", Kind: KindHost},
			{Inode: 2, Name: "blue", Path: "/r/blue", Kind: KindNamed},
			{Inode: 3, Name: "pid-x-30", Path: "/p/30", Kind: KindProcess, PID: 30},
		},
		sockets: map[uint64]int{1: 1, 2: 1, 3: 1},
	}
	s := k.scanner(ScannerOptions{Workers: 1, MaxNamespaces: 2})
	want := []nsFakeResult{{"host", 1, ""}, {"blue", 1, ""}}
	for range 2 {
		if diff := cmp.Diff(want, nsFakeScan(s)); diff != "" {
			t.Fatalf("scan (-want +got):\n%s", diff)
		}
		if s.Skipped() != 1 {
			t.Errorf("Skipped() = %d, want 1", s.Skipped())
		}
	}
	k.remove("blue")
	if diff := cmp.Diff([]nsFakeResult{{"host", 1, ""}, {"pid-x-30", 1, ""}}, nsFakeScan(s)); diff != "" || s.Skipped() != 0 {
		t.Errorf("under the cap (-want +got):\n%s; skipped %d", diff, s.Skipped())
	}
}
