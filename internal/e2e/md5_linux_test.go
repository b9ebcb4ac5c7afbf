package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/testnet"
)

// md5Key installs a TCP-MD5 key (RFC 2385) for peer on a socket before
// listen or connect, as BGP speakers do.
func md5Key(peer netip.Addr) func(string, string, syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = testnet.SetMD5Key(int(fd), peer, "secret")
		}); err != nil {
			return err
		}
		return serr
	}
}

// md5Pair connects an idle TCP-MD5 connection through the test network and
// returns its server end (keepalive off on both ends).
func md5Pair(t *testing.T, n *testnet.Net, network string) net.Conn {
	t.Helper()
	laddr, srv, cli := net.JoinHostPort(n.ServerV4.String(), "0"), n.ServerV4, n.ClientV4
	if network == "tcp6" {
		laddr, srv, cli = net.JoinHostPort(n.ServerV6.String(), "0"), n.ServerV6, n.ClientV6
	}
	var ln net.Listener
	if err := n.Server.Do(func() (err error) {
		ln, err = (&net.ListenConfig{Control: md5Key(cli), KeepAlive: -1}).Listen(context.Background(), network, laddr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var client net.Conn
	if err := n.Client.Do(func() (err error) {
		client, err = (&net.Dialer{Control: md5Key(srv), KeepAlive: -1, Timeout: testnet.DialTimeout}).Dial(network, ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server
}

// TestScanTCPMD5NeverAGhost: idle TCP-MD5 connections (BGP sessions) are
// suspects like any idle connection, but `ghostd scan` never probes them:
// its peer would drop the unsigned probes and they would look silent. The
// JSON says unprobed with unprobeable "tcp_md5", the table "unprobed
// (tcp-md5)", and neither calls them ghosts.
func TestScanTCPMD5NeverAGhost(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	md5v4, md5v6 := md5Pair(t, n, "tcp4"), md5Pair(t, n, "tcp6")
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	args := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--probe-interval", "1s"}
	out, err := exec.Command(ghostdBin, append(args, "--json")...).Output()
	if err != nil {
		t.Fatalf("ghostd scan --json: %v", err)
	}
	var doc exporter.Document
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("scan --json: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"unprobeable":"tcp_md5"`) && !strings.Contains(string(out), `"unprobeable": "tcp_md5"`) {
		t.Errorf("the JSON never says unprobeable tcp_md5:\n%s", out)
	}
	found := 0
	for _, s := range doc.Sessions {
		for _, c := range []net.Conn{md5v4, md5v6} {
			l, r := testnet.Tuple(c)
			if s.Local != l.String() || s.Remote != r.String() {
				continue
			}
			found++
			if s.Verdict != "unprobed" || s.Unprobeable != "tcp_md5" || s.Ghost || s.ProbesSent != 0 {
				t.Errorf("MD5 session %s: verdict %s unprobeable %q ghost %v probes %d; want unprobed, tcp_md5, no ghost, no probe",
					s.Local, s.Verdict, s.Unprobeable, s.Ghost, s.ProbesSent)
			}
		}
	}
	if found != 2 {
		t.Fatalf("scan listed %d of the 2 idle MD5 sessions:\n%s", found, out)
	}

	out, err = exec.Command(ghostdBin, args...).Output()
	if err != nil {
		t.Fatalf("ghostd scan: %v", err)
	}
	for _, c := range []net.Conn{md5v4, md5v6} {
		if line := lineWith(string(out), rowKey(c)); !strings.Contains(line, "unprobed (tcp-md5)") || strings.Contains(line, "ghost") {
			t.Errorf("table row %q, want unprobed (tcp-md5) and no ghost", line)
		}
	}
	if !strings.Contains(string(out), "0 ghosts") {
		t.Errorf("the summary counts ghosts:\n%s", out)
	}

	// `ghostd probe` says why, and exits 0 (not a ghost).
	l, r := testnet.Tuple(md5v4)
	out, err = exec.Command(ghostdBin, "probe", "--netns", n.Server.Name, l.String(), r.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "unprobed (tcp-md5)") {
		t.Errorf("ghostd probe on an MD5 session: %v, %q", err, out)
	}
}
