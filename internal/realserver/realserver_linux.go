package realserver

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// StartTimeout bounds a server's start (PostgreSQL's initdb included).
const StartTimeout = 60 * time.Second

// Need returns the path of a server's binary. When it is missing the test
// is skipped, except in CI (env CI=true), where it fails: CI installs the
// packages (make deps), so a missing one is a broken set-up, not a reason
// to skip silently.
func Need(t testing.TB, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (Debian package %s): %v", bin, pkg, errMissing)
		}
		t.Skipf("%s (Debian package %s) is not installed: run make deps", bin, pkg)
	}
	return p
}

// ownedDir returns a fresh directory under t.TempDir() owned by the named
// user, with its parent made traversable so that user can reach it.
func ownedDir(t testing.TB, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if name == "" || name == "root" {
		return dir
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("realserver: user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// asUser prefixes argv so that it runs as the named user (setpriv execs,
// so the process keeps the pid we started).
func asUser(name string, argv ...string) []string {
	if name == "" || name == "root" {
		return argv
	}
	return append([]string{"setpriv", "--reuid=" + name, "--regid=" + name, "--init-groups", "--"}, argv...)
}

// proc is a server process the test started; it ends in t.Cleanup.
type proc struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

// start runs the server's argv inside ns (nsenter execs, and so does
// setpriv: the pid we hold is the server's own), logging to dir/NAME.log,
// and returns once it accepts connections on V4. In t.Cleanup the process
// gets stop, then SIGKILL after 10 s, always by its pid.
func (s *Server) start(t testing.TB, ns *testnet.NS, dir string, stop syscall.Signal, argv ...string) {
	t.Helper()
	name := s.Name
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=" + ns.Path, "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("realserver: start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log (pid %d):\n%s", name, cmd.Process.Pid, tail(b, 4000))
		}
	})
	p.waitListening(t, ns, name, s.V4)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// waitListening polls a TCP connect from inside ns until the server accepts
// (or exits, or StartTimeout passes).
func (p *proc) waitListening(t testing.TB, ns *testnet.NS, name string, addr netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(StartTimeout)
	for {
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr.String(), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("realserver: %s exited before listening on %s:\n%s", name, addr, tail(b, 4000))
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("realserver: %s not listening on %s within %v: %v\n%s", name, addr, StartTimeout, err, tail(b, 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Dial opens a client connection from ns to the server (network "tcp4" or
// "tcp6") and runs the protocol's handshake; it is closed in t.Cleanup.
func (s *Server) Dial(t testing.TB, ns *testnet.NS, network string) *Client {
	t.Helper()
	addr := s.Addr(network)
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout(network, addr.String(), testnet.DialTimeout)
		return err
	}); err != nil {
		t.Fatalf("realserver: %s: dial %s from %s: %v", s.Name, addr, ns.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := s.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
