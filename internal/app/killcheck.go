package app

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/kill"
)

// destroyWorks destroys a loopback connection of ghostd's own: the only way
// to learn whether SOCK_DESTROY works here, since the kernel checks
// CAP_NET_ADMIN and CONFIG_INET_DIAG_DESTROY only once it found the socket.
// It returns nil, EPERM (no CAP_NET_ADMIN) or an error wrapping
// inventory.ErrDestroyUnsupported.
func destroyWorks() error {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("app: kill self-test: %w", err)
	}
	defer l.Close()
	c, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		return fmt.Errorf("app: kill self-test: %w", err)
	}
	defer c.Close()
	if s, err := l.Accept(); err == nil {
		defer s.Close()
	}
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	remote := netip.MustParseAddrPort(c.RemoteAddr().String())
	conn, err := inventory.Dial(0)
	if err != nil {
		return err
	}
	defer conn.Close()
	var target *inventory.Socket
	if _, err := conn.Dump(0, inventory.StateEstablished.Mask(), func(s *inventory.Socket) error {
		if target == nil && s.Local == local && s.Remote == remote {
			cp := *s
			target = &cp
		}
		return nil
	}); err != nil {
		return err
	}
	if target == nil {
		return errors.New("app: kill self-test: own connection not found in sock_diag")
	}
	return conn.Destroy(target)
}

// checkKill exports ghostd_kill_supported for an enabled kill policy and
// says once, in one line, why killing cannot work here.
func (p *parts) checkKill(pol kill.Policy, store *exporter.Store) {
	if !pol.Enabled {
		return
	}
	ok := true
	switch pol.Mode {
	case kill.ModeDestroy:
		if err := p.destroyWorksOnce(); err != nil {
			ok = false
			p.log.Warn("kill mode destroy cannot work here; detection goes on", "err", err)
		}
	case kill.ModeKeepalive:
		if !p.caps.Has(capSysPtrace) {
			ok = false
			p.log.Warn("kill mode keepalive needs CAP_SYS_PTRACE to borrow sockets (pidfd_getfd); detection goes on")
		}
	}
	// Not part of ghostd_kill_supported, which is about the mode ghosts
	// are killed with: a CLOSE_WAIT leak is no ghost.
	if pol.CloseWait && !p.caps.Has(capSysPtrace) {
		p.log.Warn("kill.close_wait needs CAP_SYS_PTRACE to borrow sockets (pidfd_getfd) and shut them down: CLOSE_WAIT leaks are reported, not ended")
	}
	if store != nil {
		store.SetKillSupported(ok)
	}
}
