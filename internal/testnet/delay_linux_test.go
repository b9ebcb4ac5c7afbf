package testnet

import (
	"io"
	"testing"
	"time"
)

// TestDelay checks that Delay adds its delay to every round trip through
// the Client, in both families, and that connections still work.
func TestDelay(t *testing.T) {
	n := New(t)
	const d = 20 * time.Millisecond
	t.Logf("delay by %s", n.Delay(t, d))
	for _, network := range []string{"tcp4", "tcp6"} {
		server, client := n.Pair(t, network)
		buf := make([]byte, 1)
		for i := range 5 {
			start := time.Now()
			server.SetDeadline(time.Now().Add(5 * time.Second))
			client.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := server.Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(client, buf); err != nil {
				t.Fatal(err)
			}
			if _, err := client.Write(buf); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(server, buf); err != nil {
				t.Fatal(err)
			}
			if rtt := time.Since(start); rtt < d {
				t.Errorf("%s: round trip %s, want at least %s", network, rtt, d)
			}
		}
	}
}
