package testnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Attacker forges packets from inside the Router namespace. It sits on the
// path between Client and Server, and what it sends is the router's own
// output: it never passes the forward chain, so the router's conntrack rules
// do not filter it, and it is not tracked (notrack), so it cannot change the
// router's conntrack state the way a box beside the path could not either.
// Its sockets are closed in t.Cleanup.
type Attacker struct {
	ns           *NS
	send4, send6 int
	sent         atomic.Uint64
}

// Attacker opens raw sockets in the Router namespace.
func (n *Net) Attacker(t testing.TB) *Attacker {
	t.Helper()
	a := &Attacker{ns: n.Router, send4: -1, send6: -1}
	err := n.Router.Do(func() (err error) {
		if a.send4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
			return fmt.Errorf("raw IPv4 socket: %w", err)
		}
		if a.send6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
			return fmt.Errorf("raw IPv6 socket: %w", err)
		}
		return nil
	})
	t.Cleanup(func() {
		for _, fd := range []int{a.send4, a.send6} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	})
	if err != nil {
		t.Fatalf("testnet: attacker: %v", err)
	}
	n.Router.Nft(t, attackerRuleset)
	return a
}

// attackerRuleset leaves the Router's own output untracked: the attacker's
// forged segments neither create nor close conntrack entries.
const attackerRuleset = `table inet gd_attacker {
	chain out {
		type filter hook output priority raw; policy accept;
		notrack
	}
}
`

// Sent returns how many packets and frames the attacker sent.
func (a *Attacker) Sent() uint64 { return a.sent.Load() }

// Send sends one whole IP datagram (its header and checksums are the
// caller's, source address included) to the datagram's destination.
func (a *Attacker) Send(pkt []byte) error {
	if len(pkt) < 20 {
		return errors.New("testnet: attacker: datagram too short")
	}
	var fd int
	var sa unix.Sockaddr
	switch pkt[0] >> 4 {
	case 4:
		fd, sa = a.send4, &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])}
	case 6:
		if len(pkt) < 40 {
			return errors.New("testnet: attacker: IPv6 datagram too short")
		}
		fd, sa = a.send6, &unix.SockaddrInet6{Addr: [16]byte(pkt[24:40])}
	default:
		return errors.New("testnet: attacker: not an IP datagram")
	}
	if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
		return fmt.Errorf("testnet: attacker: sendto: %w", os.NewSyscallError("sendto", err))
	}
	a.sent.Add(1)
	return nil
}

// FrameSender sends IP datagrams as Ethernet frames out of one of the
// Router's interfaces to a chosen destination MAC address, bypassing
// routing and neighbour resolution.
type FrameSender struct {
	fd      int
	ifindex int
	a       *Attacker
}

// Frames returns a FrameSender on the Router interface ifname (RouterServerIf
// or RouterClientIf); it is closed in t.Cleanup.
func (a *Attacker) Frames(t testing.TB, ifname string) *FrameSender {
	t.Helper()
	f := &FrameSender{fd: -1, a: a}
	err := a.ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		f.ifindex = ifi.Index
		// Protocol 0: this socket only sends.
		f.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	t.Cleanup(func() {
		if f.fd >= 0 {
			unix.Close(f.fd)
		}
	})
	if err != nil {
		t.Fatalf("testnet: attacker: frames on %s: %v", ifname, err)
	}
	return f
}

// Send sends pkt (an IP datagram) in a frame addressed to dst.
func (f *FrameSender) Send(dst net.HardwareAddr, pkt []byte) error {
	proto := uint16(unix.ETH_P_IP)
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		proto = unix.ETH_P_IPV6
	}
	sa := &unix.SockaddrLinklayer{Protocol: proto<<8 | proto>>8, Ifindex: f.ifindex, Halen: uint8(len(dst))}
	copy(sa.Addr[:], dst)
	if err := unix.Sendto(f.fd, pkt, 0, sa); err != nil {
		return fmt.Errorf("testnet: attacker: send frame: %w", os.NewSyscallError("sendto", err))
	}
	f.a.sent.Add(1)
	return nil
}
