package probe

import (
	"context"
	"net"
	"testing"
)

// TestProbeUnderPortRule: policy routing that selects on the socket's
// ports, protocol or owner (ip rule sport/dport/ipproto/uidrange) sends the
// socket's segments one way, while a raw probe, which has none of those to
// the route lookup, goes another: here into a black hole. The live peer's
// silence must not be a confirmed ghost.
func TestProbeUnderPortRule(t *testing.T) {
	seq := prSeqReader(t)
	o := newOptNet(t)
	// The server's main table sends the client's mark address into sink0;
	// only table 100 reaches it, and only the server port 5555 uses it.
	if u, err := unfollowedRules(o.Server.Path); err != nil || u {
		t.Fatalf("before the rule: unfollowedRules = %v, %v; want false (fwmark and tos rules are followed)", u, err)
	}
	o.Server.Exec(t, "ip", "rule", "add", "ipproto", "tcp", "sport", "5555", "lookup", "100")
	if u, err := unfollowedRules(o.Server.Path); err != nil || !u {
		t.Fatalf("with the rule: unfollowedRules = %v, %v; want true", u, err)
	}
	server, client := optPair(t, o.Server, o.Client, "tcp4", net.JoinHostPort(o.ServerV4.String(), "5555"), o.ClientMarkV4, nil, nil)
	exchange(t, server, client)
	cfg := fastConfig()
	cfg.Attempts = 2
	res, err := New(cfg, seq, nil).Probe(context.Background(), targetIn(t, o.Server, server))
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict.Ghost() && res.Confirmed || res.Verdict == Silent && res.Uncertain != UncertainRouting {
		t.Errorf("a live peer behind a port-selected route: %+v, want no confirmed ghost (uncertain: routing)", res)
	}
	t.Logf("verdict %s, uncertain %q", res.Verdict, res.Uncertain)
	exchange(t, server, client) // the connection itself still works
}
