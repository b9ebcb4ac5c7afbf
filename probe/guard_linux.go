package probe

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/closer"
	"github.com/ghostd/ghostd/internal/nsthread"
)

// guardReplyTimeout bounds the wait for the kernel's acknowledgements.
const guardReplyTimeout = 2 * time.Second

// nftGuard is a reset guard over one NETLINK_NETFILTER socket in the
// namespace: the socket owns the table, so closing it (or the process
// dying) deletes the table.
type nftGuard struct {
	mu   sync.Mutex // one request at a time on the socket
	conn *netlink.Conn
}

// openGuard creates ghostd's table in the namespace at nsPath ("" for the
// caller's own), replacing a leftover one. It needs CAP_NET_ADMIN there.
func openGuard(nsPath string) (resetGuard, error) {
	// The socket is made on a thread nsthread moves into the namespace
	// (netlink.Config.NetNS would move any thread, the main one included).
	dial := func() (*netlink.Conn, error) { return netlink.Dial(unix.NETLINK_NETFILTER, nil) }
	conn, err := nsthread.Open(nsPath, dial, (*netlink.Conn).Close)
	if err != nil {
		return nil, errGuard("netlink", err)
	}
	g := &nftGuard{conn: conn}
	// A table left by a ghostd without the owner flag, or by an operator:
	// the guard's rules must be its own and nothing else.
	del, err := delTableMsg()
	if err == nil {
		err = g.do(del)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		conn.Close()
		if errors.Is(err, unix.EPERM) {
			return nil, errGuard("needs CAP_NET_ADMIN (or table inet "+GuardTable+" is owned by another ghostd)", err)
		}
		return nil, errGuard("delete leftover table", err)
	}
	msgs, err := guardRuleset()
	if err == nil {
		err = g.do(msgs...)
	}
	if err != nil {
		conn.Close()
		return nil, errGuard("create table", err)
	}
	return g, nil
}

// do sends msgs as one batch and waits for every acknowledgement; it
// returns the first error the kernel reported.
func (g *nftGuard) do(msgs ...netlink.Message) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil {
		return errors.New("closed")
	}
	if _, err := g.conn.SendMessages(batch(msgs...)); err != nil {
		return err
	}
	if err := g.conn.SetReadDeadline(time.Now().Add(guardReplyTimeout)); err != nil {
		return err
	}
	var first error
	for got := 0; got < len(msgs); {
		replies, err := g.conn.Receive()
		if err != nil {
			var oe *netlink.OpError
			if !errors.As(err, &oe) {
				// A timeout or a broken socket: later replies would be
				// taken for the next request's, so the guard is done.
				g.conn.Close()
				g.conn = nil
				return err
			}
			if first == nil {
				first = err
			}
			got++
			continue
		}
		got += len(replies)
	}
	return first
}

func (g *nftGuard) add(local, remote netip.AddrPort, seq uint32, ttl time.Duration) error {
	m, err := elemMsg(true, local, remote, seq, ttl)
	if err != nil {
		return err
	}
	return g.do(m)
}

func (g *nftGuard) remove(local, remote netip.AddrPort, seq uint32) error {
	m, err := elemMsg(false, local, remote, seq, 0)
	if err != nil {
		return err
	}
	return g.do(m)
}

// close closes the socket, and with it the kernel deletes the table.
func (g *nftGuard) close() error {
	if err := closer.Close(&g.mu, &g.conn, (*netlink.Conn).Close); err != nil {
		return fmt.Errorf("probe: reset guard: close: %w", err)
	}
	return nil
}
