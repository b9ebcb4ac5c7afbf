package realserver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// start runs argv inside ns (nsenter execs, and so does setpriv: the pid we
// hold is the server's own), logging to dir/name.log. In t.Cleanup the
// process gets stop, then SIGKILL after 10 s, always by its pid.
func start(t testing.TB, ns *testnet.NS, dir, name string, stop syscall.Signal, argv ...string) *proc {
	t.Helper()
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
	return p
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

// Ports the servers listen on in their namespace.
const (
	PostgreSQLPort = 5432
	RedisPort      = 6379
	NginxPort      = 8080
	// NginxUpstreamPort is nginx's own backend, on 127.0.0.1, which its
	// upstream keepalive pool connects to.
	NginxUpstreamPort = 8081
	GoPort            = 9000
)

// pgBin returns the directory of the newest installed PostgreSQL's binaries.
func pgBin(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i]
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("postgres (Debian package postgresql): %v", errMissing)
	}
	t.Skip("postgres (Debian package postgresql) is not installed: run make deps")
	return ""
}

// PostgreSQL initdb's a cluster under t.TempDir() as the postgres user and
// runs postgres in ns, listening on v4 and v6 (trust authentication), with
// its unix socket in the same directory. PostgreSQL turns SO_KEEPALIVE on
// for every TCP client with the kernel's defaults (7200 s), as shipped.
func PostgreSQL(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server {
	t.Helper()
	bin := pgBin(t)
	psql := Need(t, "psql", "postgresql-client")
	dir := ownedDir(t, "postgres")
	data := filepath.Join(dir, "data")
	argv := asUser("postgres", filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb := exec.Command(argv[0], argv[1:]...)
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("realserver: initdb: %v\n%s", err, out)
	}
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = hba.WriteString("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n")
	hba.Close()
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(PostgreSQLPort)
	p := start(t, ns, dir, "postgres", syscall.SIGINT, asUser("postgres", filepath.Join(bin, "postgres"),
		"-D", data, "-k", dir, "-p", port,
		"-c", "listen_addresses="+v4.String()+","+v6.String(),
		"-c", "shared_buffers=16MB", "-c", "max_connections=60", "-c", "fsync=off")...)
	s := &Server{Name: "postgresql", V4: netip.AddrPortFrom(v4, PostgreSQLPort), V6: netip.AddrPortFrom(v6, PostgreSQLPort), proto: pgProto{}}
	p.waitListening(t, ns, s.Name, s.V4)
	// postgres listens before it accepts sessions ("the database system is
	// starting up"): wait for a query to succeed.
	for deadline := time.Now().Add(StartTimeout); ; time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command(psql, "-h", dir, "-p", port, "-U", "postgres", "-d", "postgres", "-AtXc", "SELECT 1").CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("realserver: postgresql does not answer within %v: %v: %s", StartTimeout, err, out)
		}
	}
	s.view = func() ([]netip.AddrPort, error) {
		out, err := exec.Command(psql, "-h", dir, "-p", port, "-U", "postgres", "-d", "postgres", "-AtX", "-F", " ", "-c",
			"SELECT host(client_addr), client_port FROM pg_stat_activity WHERE client_port > 0").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("realserver: pg_stat_activity: %w: %s", err, out)
		}
		var peers []netip.AddrPort
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line == "" {
				continue
			}
			f := strings.Fields(line)
			if len(f) != 2 {
				return nil, fmt.Errorf("realserver: pg_stat_activity row %q", line)
			}
			a, err1 := netip.ParseAddr(f[0])
			pt, err2 := strconv.ParseUint(f[1], 10, 16)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("realserver: pg_stat_activity row %q", line)
			}
			peers = append(peers, netip.AddrPortFrom(a.Unmap(), uint16(pt)))
		}
		return peers, nil
	}
	return s
}

var shippedKeepalive = regexp.MustCompile(`(?m)^tcp-keepalive 300$`)

// Redis runs redis-server in ns as the redis user, with Debian's shipped
// /etc/redis/redis.conf followed by only what a test instance must change
// (addresses, no daemon, files under t.TempDir(), no persistence): its
// tcp-keepalive 300 is left as shipped, and the test fails if Debian stops
// shipping it.
func Redis(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server {
	t.Helper()
	bin := Need(t, "redis-server", "redis-server")
	cli := Need(t, "redis-cli", "redis-tools")
	shipped, err := os.ReadFile("/etc/redis/redis.conf")
	if err != nil {
		t.Fatalf("realserver: the shipped redis.conf: %v", err)
	}
	if !shippedKeepalive.Match(shipped) {
		t.Fatal("realserver: /etc/redis/redis.conf no longer ships tcp-keepalive 300")
	}
	dir := ownedDir(t, "redis")
	sock := filepath.Join(dir, "redis.sock")
	conf := string(shipped) + fmt.Sprintf(`
# ghostd test instance: only what must differ from the shipped file.
bind %s %s
port %d
protected-mode no
daemonize no
supervised no
pidfile %s
logfile ""
dir %s
save ""
appendonly no
unixsocket %s
unixsocketperm 700
`, v4, v6, RedisPort, filepath.Join(dir, "redis.pid"), dir, sock)
	confPath := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, ns, dir, "redis", syscall.SIGTERM, asUser("redis", bin, confPath)...)
	s := &Server{Name: "redis", V4: netip.AddrPortFrom(v4, RedisPort), V6: netip.AddrPortFrom(v6, RedisPort), proto: respProto{}}
	p.waitListening(t, ns, s.Name, s.V4)
	out, err := exec.Command(cli, "-s", sock, "CONFIG", "GET", "tcp-keepalive").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\n300") {
		t.Fatalf("realserver: redis tcp-keepalive is not 300: %v %q", err, out)
	}
	s.view = func() ([]netip.AddrPort, error) {
		out, err := exec.Command(cli, "-s", sock, "CLIENT", "LIST").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("realserver: CLIENT LIST: %w: %s", err, out)
		}
		return parseRedisClients(string(out))
	}
	return s
}

// Nginx runs nginx in ns (master as root, one www-data worker) as a reverse
// proxy: clients connect on v4/v6 port NginxPort, and nginx proxies to its own
// backend on 127.0.0.1:8081 over an upstream keepalive pool (keepalive 8,
// HTTP/1.1, Connection ""). keepalive_timeout is 600 s on both sides, as
// deployments behind a load balancer set it above the balancer's idle timeout.
func Nginx(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server {
	t.Helper()
	bin := Need(t, "nginx", "nginx")
	dir := ownedDir(t, "www-data")
	conf := fmt.Sprintf(`user www-data;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 512; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	keepalive_timeout 600s;
	keepalive_requests 100000;
	upstream backend {
		server 127.0.0.1:%[5]d;
		keepalive 8;
		keepalive_timeout 600s;
		keepalive_requests 100000;
	}
	server {
		listen %[2]s:%[4]d;
		listen [%[3]s]:%[4]d;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
	server {
		listen 127.0.0.1:%[4]d;
		location = /status { stub_status; }
	}
	server {
		listen 127.0.0.1:%[5]d;
		location / { return 200 "ok\n"; }
	}
}
`, dir, v4, v6, NginxPort, NginxUpstreamPort)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nsenter", "--net="+ns.Path, "--", bin, "-t", "-q", "-e", "stderr", "-c", confPath).CombinedOutput(); err != nil {
		t.Fatalf("realserver: nginx -t: %v\n%s", err, out)
	}
	p := start(t, ns, dir, "nginx", syscall.SIGTERM, bin, "-e", "stderr", "-c", confPath, "-g", "daemon off;")
	s := &Server{Name: "nginx", V4: netip.AddrPortFrom(v4, NginxPort), V6: netip.AddrPortFrom(v6, NginxPort), proto: httpProto{}}
	p.waitListening(t, ns, s.Name, s.V4)
	s.view = func() ([]netip.AddrPort, error) { return nginxView(ns, s) }
	return s
}

// nginxBackend is nginx's own backend, which its upstream pool connects to.
var nginxBackend = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), NginxUpstreamPort)

var activeRE = regexp.MustCompile(`Active connections:\s*(\d+)`)

// nginxView lists the client connections nginx holds (ss in its namespace:
// ESTABLISHED sockets on the client-facing addresses) and checks the list
// against nginx's own count (stub_status "Active connections", which also
// counts the status request and the upstream connections its backend
// server block accepted).
func nginxView(ns *testnet.NS, s *Server) ([]netip.AddrPort, error) {
	var last error
	for try := 0; try < 25; try++ {
		if try > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		socks, err := Sockets(ns)
		if err != nil {
			return nil, err
		}
		var peers []netip.AddrPort
		backend := 0 // the upstream pool's connections, as nginx's backend server accepted them
		for _, sk := range socks {
			switch {
			case sk.Comm != "nginx":
			case sk.Local == s.V4 || sk.Local == s.V6:
				peers = append(peers, sk.Remote)
			case sk.Local == nginxBackend:
				backend++
			}
		}
		active, err := nginxActive(ns)
		if err != nil {
			return nil, err
		}
		if active == len(peers)+backend+1 {
			return peers, nil
		}
		last = fmt.Errorf("realserver: nginx counts %d active connections (the status request and %d upstream connections included), ss shows %d client sockets", active, backend, len(peers))
	}
	return nil, last
}

// nginxActive reads stub_status's "Active connections" from inside ns.
func nginxActive(ns *testnet.NS) (int, error) {
	var out []byte
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", NginxPort), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(AskTimeout))
		if _, err := c.Write([]byte("GET /status HTTP/1.0\r\nHost: status\r\n\r\n")); err != nil {
			return err
		}
		out, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("realserver: nginx stub_status: %w", err)
	}
	m := activeRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("realserver: nginx stub_status: %q", out)
	}
	return strconv.Atoi(string(m[1]))
}

// Go builds goserver and runs it in ns, on Go's defaults: net.Listen on
// ":9000" (dual-stack: IPv4 clients are v4-mapped sockets), so every
// accepted connection has keepalive 15 s idle, 15 s interval, 9 probes.
func Go(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server {
	t.Helper()
	goTool := Need(t, "go", "golang")
	dir := ownedDir(t, "")
	bin := filepath.Join(dir, "goserver")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/ghostd/ghostd/internal/realserver/goserver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("realserver: build goserver: %v\n%s", err, out)
	}
	admin := filepath.Join(dir, "admin.sock")
	p := start(t, ns, dir, "goserver", syscall.SIGTERM, bin, "-listen", fmt.Sprintf(":%d", GoPort), "-admin", admin)
	s := &Server{Name: "go", V4: netip.AddrPortFrom(v4, GoPort), V6: netip.AddrPortFrom(v6, GoPort), proto: lineProto{}}
	p.waitListening(t, ns, s.Name, s.V4)
	s.view = func() ([]netip.AddrPort, error) {
		c, err := net.DialTimeout("unix", admin, time.Second)
		if err != nil {
			return nil, fmt.Errorf("realserver: go server admin: %w", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(AskTimeout))
		var peers []netip.AddrPort
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			ap, err := parseAddrPort(sc.Text())
			if err != nil {
				return nil, fmt.Errorf("realserver: go server admin: %w", err)
			}
			peers = append(peers, ap)
		}
		return peers, sc.Err()
	}
	return s
}

// Socket is an ESTABLISHED TCP socket in a namespace and one process holding it.
type Socket struct {
	Local, Remote netip.AddrPort // v4-mapped addresses unmapped
	Inode         uint64
	Comm          string
	PID, FD       int // 0 when no process holds it
}

var (
	ssLineRE  = regexp.MustCompile(`^\s*\d+\s+\d+\s+(\S+)\s+(\S+)(.*)$`)
	ssUserRE  = regexp.MustCompile(`users:\(\("([^"]*)",pid=(\d+),fd=(\d+)\)`)
	ssInodeRE = regexp.MustCompile(`\bino:(\d+)`)
)

// Sockets lists the ESTABLISHED TCP sockets in ns (ss -tnpe), with an owner.
func Sockets(ns *testnet.NS) ([]Socket, error) {
	out, err := ns.ExecErr("", "ss", "-tnpeH", "state", "established")
	if err != nil {
		return nil, err
	}
	var socks []Socket
	for _, line := range strings.Split(out, "\n") {
		m := ssLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		l, err1 := parseAddrPort(m[1])
		r, err2 := parseAddrPort(m[2])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("realserver: ss line %q", line)
		}
		sk := Socket{Local: l, Remote: r}
		if u := ssUserRE.FindStringSubmatch(m[3]); u != nil {
			sk.Comm = u[1]
			sk.PID, _ = strconv.Atoi(u[2])
			sk.FD, _ = strconv.Atoi(u[3])
		}
		if i := ssInodeRE.FindStringSubmatch(m[3]); i != nil {
			sk.Inode, _ = strconv.ParseUint(i[1], 10, 64)
		}
		socks = append(socks, sk)
	}
	return socks, nil
}

// ArmKeepalive turns on the kernel's keepalive on the owner's socket with
// the given idle time, interval and count, through a duplicate borrowed with
// pidfd_getfd(2) (the owner's fd is untouched otherwise). The borrowed fd
// must still be the socket's inode.
func ArmKeepalive(sk Socket, idle, interval time.Duration, count int) error {
	if sk.PID == 0 {
		return fmt.Errorf("realserver: %s -> %s has no owner", sk.Local, sk.Remote)
	}
	pidfd, err := unix.PidfdOpen(sk.PID, 0)
	if err != nil {
		return fmt.Errorf("realserver: pidfd_open %d: %w", sk.PID, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, sk.FD, 0)
	if err != nil {
		return fmt.Errorf("realserver: pidfd_getfd %d/%d: %w", sk.PID, sk.FD, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("realserver: fstat: %w", err)
	}
	if st.Ino != sk.Inode {
		return fmt.Errorf("realserver: pid %d fd %d is inode %d, not %d", sk.PID, sk.FD, st.Ino, sk.Inode)
	}
	for _, o := range []struct{ level, opt, val int }{
		{unix.SOL_TCP, unix.TCP_KEEPIDLE, int(idle / time.Second)},
		{unix.SOL_TCP, unix.TCP_KEEPINTVL, int(interval / time.Second)},
		{unix.SOL_TCP, unix.TCP_KEEPCNT, count},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1}, // last: the timer starts with the new idle time
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			return fmt.Errorf("realserver: setsockopt %d/%d on pid %d fd %d: %w", o.level, o.opt, sk.PID, sk.FD, err)
		}
	}
	return nil
}
