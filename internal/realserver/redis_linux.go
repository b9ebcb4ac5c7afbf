package realserver

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/ghostd/ghostd/internal/testnet"
)

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
	s := newServer("redis", v4, v6, RedisPort, respProto)
	s.start(t, ns, dir, syscall.SIGTERM, asUser("redis", bin, confPath)...)
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
