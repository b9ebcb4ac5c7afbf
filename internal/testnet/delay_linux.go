package testnet

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Delay delays every packet the Router forwards from the Server's segment
// towards the Client by d, so every round trip from the Server through the
// Client takes d longer, while what an Attacker sends is not delayed. It
// uses tc netem when the kernel has it; otherwise (CONFIG_NET_SCH_NETEM
// unset, as on the machines ghostd is developed on) a relay in the Router
// takes over that direction: an nft rule drops what the kernel would forward
// and a packet socket on the Server-side interface re-sends each datagram
// from the Router after d (conntrack has already seen it on the way in).
// Re-sent datagrams leave as the Router's own output, past its forward
// chain, so the relay also installs the Router's rule (conntrack INVALID
// dropped, nf_conntrack_tcp_loose=0) on the Client's input: connections
// made afterwards keep a strict stateful firewall in both directions.
// The relay stops in t.Cleanup. Delay returns "netem" or "relay".
func (n *Net) Delay(t testing.TB, d time.Duration) string {
	t.Helper()
	if _, err := n.Router.ExecErr("", "tc", "qdisc", "replace", "dev", RouterClientIf, "root", "netem", "delay", d.String()); err == nil {
		return "netem"
	}
	n.Router.Nft(t, fmt.Sprintf(`table inet gd_delay {
	chain hold {
		type filter hook forward priority filter - 10; policy accept;
		iifname %q oifname %q drop
	}
}
`, RouterServerIf, RouterClientIf))
	n.Client.Nft(t, `table inet gd_delay_fw {
	chain in {
		type filter hook input priority filter; policy accept;
		iifname != "lo" ct state invalid counter drop
	}
}
`)
	n.Client.Sysctl(t, "net.netfilter.nf_conntrack_tcp_loose", "0")
	r := &relay{in: -1, out4: -1, out6: -1, delay: d, done: make(chan struct{})}
	err := n.Router.Do(func() error {
		ifi, err := net.InterfaceByName(RouterServerIf)
		if err != nil {
			return err
		}
		if r.in, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons16(unix.ETH_P_ALL))); err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(r.in, &unix.SockaddrLinklayer{Protocol: htons16(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(r.in, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		if r.out4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
			return err
		}
		r.out6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		r.close()
		t.Fatalf("testnet: delay relay: %v", err)
	}
	r.wg.Go(r.run)
	t.Cleanup(r.close)
	return "relay"
}

func htons16(v uint16) uint16 { return v<<8 | v>>8 }

// relay re-sends, after delay, the datagrams that arrive on the Router's
// Server-side interface for the Client's prefixes.
type relay struct {
	in, out4, out6 int
	delay          time.Duration
	done           chan struct{}
	once           sync.Once
	wg             sync.WaitGroup
}

// relayMax bounds how many datagrams one relay forwards.
const relayMax = 2_000_000

func (r *relay) run() {
	type held struct {
		at  time.Time
		pkt []byte
	}
	queue := make(chan held, 65536)
	var wg sync.WaitGroup
	wg.Go(func() { // sender
		for h := range queue {
			time.Sleep(time.Until(h.at))
			r.send(h.pkt)
		}
	})
	defer wg.Wait()
	defer close(queue)
	buf := make([]byte, 65536)
	for i := 0; i < relayMax; i++ {
		select {
		case <-r.done:
			return
		default:
		}
		nr, from, err := unix.Recvfrom(r.in, buf, 0)
		if err != nil {
			continue // timeout: look at done again
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype != unix.PACKET_HOST || nr < 20 {
			continue
		}
		pkt := buf[:nr]
		if !toClient(pkt) {
			continue
		}
		pkt = append([]byte(nil), pkt...)
		fixTCPChecksum(pkt)
		select {
		case queue <- held{time.Now().Add(r.delay), pkt}:
		default: // a full queue drops, as a full link would
		}
	}
}

// toClient reports whether an IP datagram is addressed to the Client's side.
func toClient(pkt []byte) bool {
	switch pkt[0] >> 4 {
	case 4:
		return [4]byte(pkt[16:20]) == clientV4.As4() // the only host there
	case 6:
		return len(pkt) >= 40 && [16]byte(pkt[24:40]) == clientV6.As16()
	}
	return false
}

func (r *relay) send(pkt []byte) {
	var err error
	if pkt[0]>>4 == 4 {
		err = unix.Sendto(r.out4, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])})
	} else {
		err = unix.Sendto(r.out6, pkt, 0, &unix.SockaddrInet6{Addr: [16]byte(pkt[24:40])})
	}
	_ = err // a lost datagram is what a link may do
}

// fixTCPChecksum completes the TCP checksum of a datagram captured from a
// local stack that left it to offload (the field then holds only the
// pseudo-header sum), as the veth would have.
func fixTCPChecksum(pkt []byte) {
	var tcp, pseudo []byte
	switch pkt[0] >> 4 {
	case 4:
		hl := int(pkt[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(pkt[2:4]))
		if pkt[9] != unix.IPPROTO_TCP || hl < 20 || tot > len(pkt) || tot < hl+20 {
			return
		}
		tcp = pkt[hl:tot]
		pseudo = append(append(append([]byte{}, pkt[12:20]...), 0, unix.IPPROTO_TCP), byte(len(tcp)>>8), byte(len(tcp)))
	case 6:
		pl := int(binary.BigEndian.Uint16(pkt[4:6]))
		if len(pkt) < 40 || pkt[6] != unix.IPPROTO_TCP || 40+pl > len(pkt) || pl < 20 {
			return
		}
		tcp = pkt[40 : 40+pl]
		pseudo = append(append([]byte{}, pkt[8:40]...), 0, 0, byte(len(tcp)>>8), byte(len(tcp)), 0, 0, 0, unix.IPPROTO_TCP)
	default:
		return
	}
	tcp[16], tcp[17] = 0, 0
	var sum uint32
	for _, b := range [][]byte{pseudo, tcp} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(tcp[16:], ^uint16(sum))
}

func (r *relay) close() {
	r.once.Do(func() { close(r.done) })
	r.wg.Wait()
	for _, fd := range []int{r.in, r.out4, r.out6} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
