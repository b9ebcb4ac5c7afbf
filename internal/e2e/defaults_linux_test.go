package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// TestDefaultsConfirmWithinTwoMinutes runs ghostd on its default thresholds
// and timing (60 s idle, 15 s scans, 3 probes 1 s apart) and checks that a
// peer that goes quiet and dies is confirmed a ghost within 2 minutes, where
// the kernel's own keepalive would take 2 h 11 min.
func TestDefaultsConfirmWithinTwoMinutes(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("waits out the default 60 s idle threshold; skipped with -short")
	}
	t.Parallel()
	n := testnet.New(t)
	s, c := n.Pair(t, "tcp4")
	noKeepalive(t, s, c)
	roundTrip(t, &scenario{name: "last exchange", server: s, client: c})
	quiet := time.Now() // the connection goes quiet now...
	n.DropFromClient(t, c)
	d := startDaemon(t, "", "--netns", n.Server.Name) // ...and its peer is gone
	key := rowKey(s)
	took := waitFor(t, 2*time.Minute, "ghost confirmed on defaults", func() (bool, string) {
		doc, err := d.sessions("?ghost=true")
		if err != nil {
			return false, err.Error()
		}
		for i := range doc.Sessions {
			if sessionKey(&doc.Sessions[i]) == key {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d ghosts listed", len(doc.Sessions))
	})
	t.Logf("defaults: ghost confirmed %.0fs after the connection went quiet (waitFor %.0fs)", time.Since(quiet).Seconds(), took.Seconds())
	if since := time.Since(quiet); since > 2*time.Minute {
		t.Errorf("confirmed %v after going quiet, want ≤ 2m", since)
	}
}
