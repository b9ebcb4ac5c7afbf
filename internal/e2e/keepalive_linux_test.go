package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/testnet"
)

// TestDaemonReadsOwnKeepalive: the daemon reads each suspect's own
// keepalive settings with its sequence numbers (BPF iterator) and leaves a
// socket whose kernel finds a dead peer sooner than ghostd to that kernel,
// while a PostgreSQL-shaped one (keepalive on the namespace's 7200 s) stays
// an idle suspect with its kernel deadline shown.
func TestDaemonReadsOwnKeepalive(t *testing.T) {
	needRoot(t)
	t.Parallel()
	n := testnet.New(t)
	pgS, pgC := keepaliveOnDefaults(t, n)
	fastS, fastC := keepaliveOnDefaults(t, n)
	// 1 s idle, 1 s apart, 2 probes: its kernel ends a dead peer 3 s after
	// its last answer, before ghostd (2 s idle + 1 s scans + a 3 s probe
	// round = 6 s) could.
	testnet.Control(t, fastS.(*net.TCPConn), "keepalive settings", func(fd int) error {
		for _, o := range [][2]int{{unix.TCP_KEEPIDLE, 1}, {unix.TCP_KEEPINTVL, 1}, {unix.TCP_KEEPCNT, 2}} {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, o[0], o[1]); err != nil {
				return err
			}
		}
		return nil
	})
	roundTrip(t, &scenario{name: "pg", server: pgS, client: pgC})
	roundTrip(t, &scenario{name: "fast", server: fastS, client: fastC})
	d := startDaemon(t, "", "--netns", n.Server.Name, "--idle", "2s", "--interval", "1s")

	sessions := func() (map[string]exporter.Session, error) {
		doc, err := d.sessions("")
		if err != nil {
			return nil, err
		}
		m := map[string]exporter.Session{}
		for _, s := range doc.Sessions {
			m[sessionKey(&s)] = s
		}
		return m, nil
	}
	pgKey, fastKey := rowKey(pgS), rowKey(fastS)
	var pg exporter.Session
	waitFor(t, 20*time.Second, "the PostgreSQL-shaped socket probed alive, the fast one gone from the suspects", func() (bool, string) {
		m, err := sessions()
		if err != nil {
			return false, err.Error()
		}
		var ok bool
		pg, ok = m[pgKey]
		_, fast := m[fastKey]
		return ok && pg.Verdict == "alive" && !fast, fmt.Sprintf("pg %+v listed %v; fast listed %v", pg, ok, fast)
	})
	if pg.KernelDeadlineBasis != "keepalive" || pg.KernelDeadlineSeconds == nil || *pg.KernelDeadlineSeconds < 7000 || !pg.KernelDeadlineLowerBound {
		t.Errorf("PostgreSQL-shaped socket: kernel deadline %v %q lower bound %v, want ≥ 7000 s keepalive lower bound",
			pg.KernelDeadlineSeconds, pg.KernelDeadlineBasis, pg.KernelDeadlineLowerBound)
	}
	// It stays left to its kernel, scan after scan.
	for range 5 {
		time.Sleep(time.Second)
		m, err := sessions()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := m[fastKey]; ok {
			t.Fatalf("the fast keepalive socket is a suspect again: %+v", s)
		}
	}
	roundTrip(t, &scenario{name: "fast, after", server: fastS, client: fastC})
}
