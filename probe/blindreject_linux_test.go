package probe

import (
	"context"
	"testing"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestBlindThroughRejectingRouter: a stateful firewall that rejects what it
// finds INVALID (a fallback reject rule after "ct state established
// accept", as many hosts and routers have) answers most blind probes
// itself: with a RST at the probe's ACK number, or an ICMP error quoting
// the probe exactly. Neither says anything about the peer, which holds the
// connection: no live peer may come out a confirmed ghost.
func TestBlindThroughRejectingRouter(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	cfg := fastConfig()
	cfg.Attempts = 3
	n.Router.Nft(t, "delete table inet gd_router\n")
	defer n.Router.Nft(t, routerRulesetForTests)
	for _, reject := range []string{"reject with tcp reset", "reject with icmpx admin-prohibited", "reject"} {
		t.Run(reject, func(t *testing.T) {
			n.Router.Nft(t, `table inet gd_reject {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state invalid counter meta l4proto tcp `+reject+`
	}
}
`)
			defer n.Router.Nft(t, "delete table inet gd_reject\n")
			var targets []Target
			for range 8 {
				s, _ := n.Pair(t, "tcp4")
				targets = append(targets, targetOf(t, n, s))
			}
			ghosts, alive := 0, 0
			for i, r := range New(cfg, nil, nil).ProbeAll(context.Background(), targets) {
				if r.Mode != Blind {
					t.Fatalf("target %d: mode %s", i, r.Mode)
				}
				if r.Verdict.Ghost() && r.Confirmed {
					ghosts++
					t.Errorf("target %d: a live peer became a confirmed ghost: %s after %d probes, %d replies", i, r.Verdict, r.Sent, r.Replies)
				}
				if r.Verdict == Alive {
					alive++
				}
			}
			t.Logf("%d of %d live peers answered, %d confirmed ghosts", alive, len(targets), ghosts)
		})
	}
}
