package realserver

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

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
	s := newServer("nginx", v4, v6, NginxPort, httpProto{})
	s.start(t, ns, dir, syscall.SIGTERM, bin, "-e", "stderr", "-c", confPath, "-g", "daemon off;")
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
