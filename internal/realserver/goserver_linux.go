package realserver

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

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
	s := newServer("go", v4, v6, GoPort, goProto)
	s.start(t, ns, dir, syscall.SIGTERM, bin, "-listen", fmt.Sprintf(":%d", GoPort), "-admin", admin)
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
