package e2e

import (
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/engine"
	"github.com/ghostd/ghostd/internal/testnet"
)

// TestScanDNATInOutput: a client talking to a Service VIP, DNATed in its
// own namespace's OUTPUT chain (kube-proxy's shape). `ghostd scan --json` of
// the client's namespace must find the healthy connection alive in every
// run and the one whose backend lost it a ghost, both marked "nat": "dnat".
// Before the conntrack lookup every such connection was silent: killable.
func TestScanDNATInOutput(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	l := n.Server.Listen(t, "tcp4", net.JoinHostPort(n.ServerV4.String(), "0"))
	backend := l.Addr().(*net.TCPAddr).AddrPort()
	vip := n.DNATOutput(t, "tcp4", backend)
	healthy := n.Client.DialFrom(t, "tcp4", n.ClientV4, vip)
	healthyPeer := testnet.Accept(t, l)
	dead := n.Client.DialFrom(t, "tcp4", n.ClientV4, vip)
	deadPeer := testnet.Accept(t, l)
	noKeepalive(t, healthy, healthyPeer, dead, deadPeer)
	roundTrip(t, &scenario{name: "healthy", server: healthyPeer, client: healthy})
	roundTrip(t, &scenario{name: "dead", server: deadPeer, client: dead})
	n.Server.LoseConn(t, deadPeer)
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	hl, _ := testnet.Tuple(healthy)
	dl, _ := testnet.Tuple(dead)
	args := []string{"scan", "--json", "--netns", n.Client.Name, "--idle", "2s", "--probe-interval", "1s"}
	for run := range 3 {
		out, err := exec.Command(ghostdBin, args...).Output()
		if err != nil {
			t.Fatalf("run %d: ghostd %s: %v", run, strings.Join(args, " "), err)
		}
		var doc exporter.Document
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		got := map[string]exporter.Session{}
		for _, s := range doc.Sessions {
			got[s.Local] = s
		}
		h, ok := got[engine.FormatAddr(hl)]
		if !ok || h.Verdict != "alive" || h.Ghost || h.NAT != "dnat" || h.Remote != engine.FormatAddr(vip) {
			t.Errorf("run %d: healthy DNATed connection: %+v (present %v), want alive with nat dnat\n%s", run, h, ok, out)
		}
		d, ok := got[engine.FormatAddr(dl)]
		if !ok || !d.Ghost || d.NAT != "dnat" {
			t.Errorf("run %d: dead DNATed connection: %+v (present %v), want a ghost with nat dnat\n%s", run, d, ok, out)
		}
		t.Logf("run %d: healthy %s (%d/%d), dead %s (%d/%d)", run, h.Verdict, h.Replies, h.ProbesSent, d.Verdict, d.Replies, d.ProbesSent)
	}

	// With the default unit's capabilities, without CAP_NET_ADMIN: ctnetlink
	// refuses the lookup, and the namespace's /proc/net/nf_conntrack answers.
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is missing: %v", err)
	}
	caps := "-all,+net_raw,+sys_admin,+sys_ptrace,+dac_read_search,+bpf,+perfmon"
	cmd := exec.Command(setpriv, append([]string{"--bounding-set=" + caps, "--inh-caps=-all", "--", ghostdBin}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ghostd scan without CAP_NET_ADMIN: %v\n%s", err, stderr.String())
	}
	var doc exporter.Document
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, s := range doc.Sessions {
		switch s.Local {
		case engine.FormatAddr(hl):
			if s.Verdict != "alive" || s.NAT != "dnat" {
				t.Errorf("without CAP_NET_ADMIN, healthy: %+v", s)
			}
		case engine.FormatAddr(dl):
			if !s.Ghost || s.NAT != "dnat" {
				t.Errorf("without CAP_NET_ADMIN, dead: %+v", s)
			}
		}
	}
	if !strings.Contains(stderr.String(), "/proc/net/nf_conntrack") {
		t.Errorf("the fallback is not logged:\n%s", stderr.String())
	}
	t.Logf("without CAP_NET_ADMIN: %d sessions; log:\n%s", len(doc.Sessions), stderr.String())
	roundTrip(t, &scenario{name: "healthy after the scans", server: healthyPeer, client: healthy})
}
