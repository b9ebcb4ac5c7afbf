package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/probe/probetest"
)

// victim is one healthy idle connection under attack, with what an on-path
// attacker knows of it: the server socket's sequence state.
type victim struct {
	*scenario
	local, remote netip.AddrPort // the server end's
	st            probe.SeqState
}

// attackEnv is what every attack may use.
type attackEnv struct {
	n      *testnet.Net
	atk    *testnet.Attacker
	frames *testnet.FrameSender // out of the Router's Server-side interface
}

// foreignMAC is a destination no interface on the test network has
// (locally administered, in the documentation block 00-00-5E-00-53).
var foreignMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}

// paced sends, with send, the packet build(i) makes for i = 0, 1, … in
// bursts of burst packets, one burst per pause, until max packets, ctx is
// done or building or sending fails: every attack is bounded in packets as
// well as in time.
func paced(ctx context.Context, max, burst int, pause time.Duration, send func([]byte) error, build func(i int) ([]byte, error)) error {
	for i := 0; i < max && ctx.Err() == nil; i++ {
		pkt, err := build(i)
		if err != nil {
			return err
		}
		if err := send(pkt); err != nil {
			return err
		}
		if i%burst == burst-1 {
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}
	return nil
}

// rstFrom is a RST claiming to come from the peer, with sequence number seq.
func rstFrom(v *victim, seq uint32) ([]byte, error) {
	return probetest.AppendSegment(nil, probetest.Segment{Src: v.remote, Dst: v.local, Seq: seq, Flags: probetest.FlagRST, ID: uint16(rand.Uint32())})
}

// icmpUnreachable is a host (IPv4) or address (IPv6) unreachable error
// from the Router to the server, quoting a segment of the connection.
func icmpUnreachable(env *attackEnv, v *victim, quoteSeq, quoteAck uint32) ([]byte, error) {
	quoted, err := probetest.AppendSegment(nil, probetest.Segment{Src: v.local, Dst: v.remote,
		Seq: quoteSeq, Ack: quoteAck, Flags: probetest.FlagACK, Window: 512, ID: uint16(rand.Uint32())})
	if err != nil {
		return nil, err
	}
	to := v.local.Addr()
	if to.Is4() {
		return probetest.AppendICMPError(nil, env.n.RouterServerV4, to, 3, 1, quoted) // destination unreachable, host unreachable
	}
	return probetest.AppendICMPError(nil, env.n.RouterServerV6, to, 1, 3, quoted) // destination unreachable, address unreachable
}

// daemonAttack is one attack of issue 11 against every victim at once.
type daemonAttack struct {
	name string
	// setup prepares the network for the attack, once, and returns a func
	// that counts, outside ghostd, how far the forged packets got (nil when
	// only the capture's reject counters can tell), and false when the
	// attack cannot run here.
	setup func(t *testing.T, env *attackEnv) (reached func() uint64, ok bool)
	run   func(ctx context.Context, env *attackEnv, v *victim) error
	// rejects says the capture must have rejected some of the forged
	// packets (probe_replies_rejected_total grew).
	rejects bool
	// rxOff: the Server's veth must verify checksums itself while the
	// attack runs.
	rxOff bool
}

var daemonAttacks = []daemonAttack{{
	// Thousands of RSTs spread over the receive window, never at RCV.NXT
	// (which the kernel itself would take) nor at the probe's ACK value.
	name:    "in-window RST spray",
	rejects: true,
	setup: func(t *testing.T, env *attackEnv) (func() uint64, bool) {
		// The server's kernel answers (or, rate-limited, skips answering)
		// every in-window RST with a challenge ACK (RFC 5961).
		return func() uint64 {
			return netstat(t, env.n.Server, "TcpExt", "TCPChallengeACK") + netstat(t, env.n.Server, "TcpExt", "TCPACKSkippedChallenge")
		}, true
	},
	run: func(ctx context.Context, env *attackEnv, v *victim) error {
		const spread = 2000
		step := max(v.st.RcvWnd, spread) / spread
		return paced(ctx, 25000, 4, time.Millisecond, env.atk.Send, func(i int) ([]byte, error) {
			return rstFrom(v, v.st.RcvNxt+1+uint32(i%spread)*step)
		})
	},
}, {
	name:    "RST flood with wrong sequence numbers",
	rejects: true,
	run: func(ctx context.Context, env *attackEnv, v *victim) error {
		return paced(ctx, 25000, 4, time.Millisecond, env.atk.Send, func(int) ([]byte, error) {
			seq := rand.Uint32()
			if seq == v.st.RcvNxt || seq == v.st.RcvNxt-1 {
				seq += 2
			}
			return rstFrom(v, seq)
		})
	},
}, {
	// Unreachables quoting guessed segments (random numbers), the
	// kernel's own acceptable quote (SND.UNA), and the probe's own numbers
	// (SND.UNA-1, RCV.NXT-1) with a guessed IPv4 id: the closest an attacker
	// who knows the state but cannot see the probe gets. IPv6 has no id, so
	// there the last quote matches a probe and ghostd takes it; the peer's
	// ACK, which always follows, still makes the verdict alive.
	name:    "spoofed ICMP unreachables",
	rejects: true,
	run: func(ctx context.Context, env *attackEnv, v *victim) error {
		return paced(ctx, 7000, 1, time.Millisecond, env.atk.Send, func(i int) ([]byte, error) {
			seq, ack := rand.Uint32(), rand.Uint32()
			switch i % 4 {
			case 2:
				seq, ack = v.st.SndUna, v.st.RcvNxt
			case 3:
				seq, ack = v.st.SndUna-1, v.st.RcvNxt-1
			}
			return icmpUnreachable(env, v, seq, ack)
		})
	},
}, {
	// Probe-shaped ACKs (SND.UNA-1, out of the peer's window) to the peer,
	// as if from the probed host, one per 300 ms: each uses up the peer's
	// answer budget (one per 500 ms, tcp_invalid_ratelimit), so our probe
	// may go unanswered. They are shaped like our probes so that the strict
	// conntrack in front of the peer lets them through. The peer's answers
	// to them still reach the probed host and say alive: the safe direction.
	name: "spoofed ACKs to the peer",
	setup: func(t *testing.T, env *attackEnv) (func() uint64, bool) {
		return func() uint64 { return netstat(t, env.n.Client, "TcpExt", "TCPACKSkippedSeq") }, true
	},
	run: func(ctx context.Context, env *attackEnv, v *victim) error {
		win := uint16(min(v.st.RcvWnd>>min(v.st.RcvWScale, 14), 65535))
		return paced(ctx, 50, 1, 300*time.Millisecond, env.atk.Send, func(int) ([]byte, error) {
			return probetest.AppendSegment(nil, probetest.Segment{Src: v.local, Dst: v.remote,
				Seq: v.st.SndUna - 1, Ack: v.st.RcvNxt - 1, Flags: probetest.FlagACK, Window: win, ID: uint16(rand.Uint32())})
		})
	},
}, {
	// The exact RSTs (the peer's answer to our probe, RCV.NXT-1, and
	// RCV.NXT) in frames addressed to another host on the server's link:
	// the kernel drops them (PACKET_OTHERHOST), and so must ghostd.
	name: "exact RSTs in OTHERHOST frames",
	setup: func(t *testing.T, env *attackEnv) (func() uint64, bool) {
		env.n.Server.Nft(t, fmt.Sprintf(`table netdev gd_otherhost {
	chain in {
		type filter hook ingress device %q priority 0; policy accept;
		meta pkttype other counter
	}
}
`, testnet.ServerIf))
		return func() uint64 {
			return nftPackets(t, env.n.Server.Exec(t, "nft", "list", "table", "netdev", "gd_otherhost"))
		}, true
	},
	run: func(ctx context.Context, env *attackEnv, v *victim) error {
		toForeign := func(pkt []byte) error { return env.frames.Send(foreignMAC, pkt) }
		return paced(ctx, 20000, 4, time.Millisecond, toForeign, func(i int) ([]byte, error) {
			return rstFrom(v, v.st.RcvNxt-1+uint32(i%2))
		})
	},
}, {
	// The exact RSTs with a wrong TCP checksum, as packets for this host:
	// the kernel drops them, and so must ghostd. A veth marks what comes
	// from a raw socket as already checked unless rx checksumming is off,
	// so without ethtool this attack would reset the connection for real.
	name:    "exact RSTs with bad checksums",
	rejects: true,
	rxOff:   true,
	setup: func(t *testing.T, env *attackEnv) (func() uint64, bool) {
		if _, err := exec.LookPath("ethtool"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("ethtool is missing (Debian package ethtool): %v", err)
			}
			t.Logf("attack skipped: needs ethtool (Debian package ethtool): %v", err)
			return nil, false
		}
		// The server's kernel dropped them for their checksum (TCP over
		// IPv4 and IPv6 share the counter).
		return func() uint64 { return netstat(t, env.n.Server, "Tcp", "InCsumErrors") }, true
	},
	run: func(ctx context.Context, env *attackEnv, v *victim) error {
		return paced(ctx, 20000, 4, time.Millisecond, env.atk.Send, func(i int) ([]byte, error) {
			pkt, err := rstFrom(v, v.st.RcvNxt-1+uint32(i%2))
			if err != nil {
				return nil, err
			}
			pkt[len(pkt)-probetest.TCPMinSize+16] ^= 0x5a // the TCP checksum
			return pkt, nil
		})
	},
}}
