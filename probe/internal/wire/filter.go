package wire

import (
	"fmt"
	"slices"

	"golang.org/x/net/bpf"
)

// MaxFilterPorts is the most local ports the capture filter checks; beyond
// that it keeps every port's replies, to be matched in user space.
const MaxFilterPorts = 64

// SnapTCP is how many bytes of each TCP segment the filter keeps: a
// whole reply (a pure ACK or a RST without payload, options included) fits,
// so its checksum can be verified; a longer one is truncated and fails
// verification.
const SnapTCP = 256

// SnapICMP is how many bytes of an ICMP or ICMPv6 message the filter
// keeps: a whole error fits (an ICMPv4 error is at most 576 bytes, an
// ICMPv6 error at most the IPv6 minimum MTU, RFC 4443), so its checksum
// can be verified.
const SnapICMP = 1280

// ReplyFilter returns the classic BPF program for the probes' capture socket, which sees
// datagrams from the IP header on (a SOCK_DGRAM packet socket). It keeps
// TCP segments with RST, TCP segments with ACK and no payload (not SYN), ICMP
// destination unreachable and echo replies, for IPv4 and IPv6 without
// extension headers. With hostOnly it first drops every frame that was not
// addressed to this host (PACKET_HOST): what this host sends, and frames for
// other hosts seen on a bridge port or a veth, which the kernel drops too.
// That needs a kernel ancillary load that x/net/bpf's VM cannot run. With
// up to MaxFilterPorts local ports, TCP segments to other ports are dropped
// in the kernel too, so a busy namespace's traffic does not reach ghostd.
func ReplyFilter(hostOnly bool, ports []uint16) ([]bpf.Instruction, error) {
	ports = slices.Compact(slices.Sorted(slices.Values(ports)))
	if len(ports) > MaxFilterPorts {
		ports = nil
	}
	portCheck := func(p *bpfProg, label string) {
		if len(ports) == 0 {
			return
		}
		for _, port := range ports {
			p.jeq(uint32(port), label, "")
		}
		p.add(bpf.RetConstant{Val: 0})
		p.label(label)
	}
	const (
		packetHost = 0 // PACKET_HOST
	)
	p := &bpfProg{}
	if hostOnly {
		p.add(bpf.LoadExtension{Num: bpf.ExtType}) // SKF_AD_PKTTYPE
		p.jeq(packetHost, "", "drop")
	}
	p.add(bpf.LoadAbsolute{Off: 0, Size: 1})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	p.jeq(4, "v4", "")
	p.jeq(6, "v6", "drop")

	p.label("v4")
	p.add(bpf.LoadAbsolute{Off: ipv4Protocol, Size: 1})
	p.jeq(ProtoTCP, "tcp4", "")
	p.jeq(ProtoICMP, "icmp4", "drop")
	p.label("tcp4")
	p.add(bpf.LoadAbsolute{Off: ipv4FlagsFrag, Size: 2})
	p.jset(ipv4FragOffsetMask|ipv4FlagMoreFrags, "drop", "")
	p.add(bpf.LoadMemShift{Off: 0}) // X = IPv4 header length
	if len(ports) > 0 {
		p.add(bpf.LoadIndirect{Off: tcpDstPort, Size: 2})
		portCheck(p, "port4")
	}
	p.add(bpf.LoadIndirect{Off: tcpFlags, Size: 1})
	p.jset(uint32(FlagSYN), "drop", "")
	p.jset(uint32(FlagRST), "keep", "")
	p.jset(uint32(FlagACK), "", "drop")
	// No payload: total length == IP header + TCP data offset.
	p.add(bpf.LoadIndirect{Off: tcpDataOff, Size: 1})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 2})
	p.add(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	p.add(bpf.TAX{})
	p.add(bpf.LoadAbsolute{Off: ipv4TotalLen, Size: 2})
	p.jeqX("keep", "drop")
	p.label("icmp4")
	p.add(bpf.LoadMemShift{Off: 0})
	p.add(bpf.LoadIndirect{Off: 0, Size: 1})
	p.jeq(icmpUnreachable, "keepicmp", "")
	p.jeq(icmpEchoReply, "keepicmp", "drop")

	p.label("v6")
	p.add(bpf.LoadAbsolute{Off: ipv6NextHeader, Size: 1})
	p.jeq(ProtoTCP, "tcp6", "")
	p.jeq(ProtoICMPv6, "icmp6", "drop")
	p.label("tcp6")
	if len(ports) > 0 {
		p.add(bpf.LoadAbsolute{Off: IPv6Size + tcpDstPort, Size: 2})
		portCheck(p, "port6")
	}
	p.add(bpf.LoadAbsolute{Off: IPv6Size + tcpFlags, Size: 1})
	p.jset(uint32(FlagSYN), "drop", "")
	p.jset(uint32(FlagRST), "keep", "")
	p.jset(uint32(FlagACK), "", "drop")
	p.add(bpf.LoadAbsolute{Off: IPv6Size + tcpDataOff, Size: 1})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 2})
	p.add(bpf.TAX{})
	p.add(bpf.LoadAbsolute{Off: ipv6PayloadLen, Size: 2})
	p.jeqX("keep", "drop")
	p.label("icmp6")
	p.add(bpf.LoadAbsolute{Off: IPv6Size, Size: 1})
	p.jeq(icmpv6Unreachable, "keepicmp", "")
	p.jeq(icmpv6EchoReply, "keepicmp", "drop")

	p.label("keepicmp")
	p.add(bpf.RetConstant{Val: SnapICMP})
	p.label("keep")
	p.add(bpf.RetConstant{Val: SnapTCP})
	p.label("drop")
	p.add(bpf.RetConstant{Val: 0})
	return p.assemble()
}

// bpfProg is a tiny assembler for forward jumps to named labels.
type bpfProg struct {
	ins    []bpf.Instruction
	jumps  map[int][2]string // instruction index → (true, false) targets; "" = next
	labels map[string]int
}

func (p *bpfProg) add(i bpf.Instruction) { p.ins = append(p.ins, i) }

func (p *bpfProg) label(name string) {
	if p.labels == nil {
		p.labels = make(map[string]int)
	}
	p.labels[name] = len(p.ins)
}

func (p *bpfProg) jump(i bpf.Instruction, t, f string) {
	if p.jumps == nil {
		p.jumps = make(map[int][2]string)
	}
	p.jumps[len(p.ins)] = [2]string{t, f}
	p.add(i)
}

func (p *bpfProg) jeq(v uint32, t, f string) {
	p.jump(bpf.JumpIf{Cond: bpf.JumpEqual, Val: v}, t, f)
}

func (p *bpfProg) jset(v uint32, t, f string) {
	p.jump(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: v}, t, f)
}

func (p *bpfProg) jeqX(t, f string) {
	p.jump(bpf.JumpIfX{Cond: bpf.JumpEqual}, t, f)
}

func (p *bpfProg) assemble() ([]bpf.Instruction, error) {
	skip := func(at int, name string) (uint8, error) {
		if name == "" {
			return 0, nil
		}
		to, ok := p.labels[name]
		if !ok || to <= at || to-at-1 > 255 {
			return 0, fmt.Errorf("wire: bpf: bad jump from %d to %q", at, name)
		}
		return uint8(to - at - 1), nil
	}
	for at, tf := range p.jumps {
		st, err := skip(at, tf[0])
		if err != nil {
			return nil, err
		}
		sf, err := skip(at, tf[1])
		if err != nil {
			return nil, err
		}
		switch j := p.ins[at].(type) {
		case bpf.JumpIf:
			j.SkipTrue, j.SkipFalse = st, sf
			p.ins[at] = j
		case bpf.JumpIfX:
			j.SkipTrue, j.SkipFalse = st, sf
			p.ins[at] = j
		}
	}
	return p.ins, nil
}
