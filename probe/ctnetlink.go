package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/mdlayher/netlink"

	"github.com/ghostd/ghostd/probe/internal/wire"
)

// ctnetlink messages (linux/netfilter/nfnetlink_conntrack.h): requests and
// replies are built and parsed here, without syscalls, so they are tested
// and fuzzed on any platform.

const (
	nfnlSubsysCTNetlink = 1 // NFNL_SUBSYS_CTNETLINK
	ipctnlMsgCTNew      = 0 // IPCTNL_MSG_CT_NEW: an entry, in replies
	ipctnlMsgCTGet      = 1 // IPCTNL_MSG_CT_GET

	ctaTupleOrig  = 1 // CTA_TUPLE_ORIG
	ctaTupleReply = 2 // CTA_TUPLE_REPLY
	ctaTupleIP    = 1 // CTA_TUPLE_IP
	ctaTupleProto = 2 // CTA_TUPLE_PROTO
	ctaIPv4Src    = 1 // CTA_IP_V4_SRC
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoNum   = 1 // CTA_PROTO_NUM
	ctaProtoSrc   = 2 // CTA_PROTO_SRC_PORT
	ctaProtoDst   = 3 // CTA_PROTO_DST_PORT

	nlmsgHdrLen = 16
	nfgenHdrLen = 4
	nlmsgError  = 2 // NLMSG_ERROR
	nlmsgDone   = 3 // NLMSG_DONE
	nlmFRequest = 0x1
	nlmFAck     = 0x4
	nlmFDump    = 0x300 // NLM_F_ROOT|NLM_F_MATCH
	afInet      = 2
	afInet6     = 10
	afUnspec    = 0
)

// ctEntry is one conntrack entry's two directions and protocol.
type ctEntry struct {
	proto       uint8
	orig, reply ctTuple
}

// errCTMessage is a malformed ctnetlink message.
var errCTMessage = errors.New("malformed ctnetlink message")

// appendCTRequest appends a netlink request of type IPCTNL_MSG_CT_GET: a
// lookup by the TCP tuple k.local → k.remote when dump is false (the kernel
// finds an entry by either direction's tuple), else a dump of every entry of
// the namespace. Both ask for an ACK or end with NLMSG_DONE.
func appendCTRequest(b []byte, seq uint32, k flowKey, dump bool) ([]byte, error) {
	var attrs []byte
	family := uint8(afUnspec)
	flags := uint16(nlmFRequest | nlmFDump)
	if !dump {
		flags = nlmFRequest | nlmFAck
		src, dst := k.local.Addr().Unmap(), k.remote.Addr().Unmap()
		if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
			return b, fmt.Errorf("ctnetlink: bad tuple %s→%s", k.local, k.remote)
		}
		family = afInet6
		srcAttr, dstAttr := uint16(ctaIPv6Src), uint16(ctaIPv6Dst)
		if src.Is4() {
			family, srcAttr, dstAttr = afInet, ctaIPv4Src, ctaIPv4Dst
		}
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		ae.Nested(ctaTupleOrig, func(t *netlink.AttributeEncoder) error {
			t.Nested(ctaTupleIP, func(ip *netlink.AttributeEncoder) error {
				ip.Bytes(srcAttr, src.AsSlice())
				ip.Bytes(dstAttr, dst.AsSlice())
				return nil
			})
			t.Nested(ctaTupleProto, func(p *netlink.AttributeEncoder) error {
				p.Uint8(ctaProtoNum, wire.ProtoTCP)
				p.Uint16(ctaProtoSrc, k.local.Port())
				p.Uint16(ctaProtoDst, k.remote.Port())
				return nil
			})
			return nil
		})
		var err error
		if attrs, err = ae.Encode(); err != nil {
			return b, fmt.Errorf("ctnetlink: %w", err)
		}
	}
	n := nlmsgHdrLen + nfgenHdrLen + len(attrs)
	b = binary.NativeEndian.AppendUint32(b, uint32(n))
	b = binary.NativeEndian.AppendUint16(b, nfnlSubsysCTNetlink<<8|ipctnlMsgCTGet)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // the kernel fills in our port id
	b = append(b, family, 0 /* NFNETLINK_V0 */, 0, 0)
	return append(b, attrs...), nil
}

// parseCTReply parses one datagram of replies to the request with sequence
// number seq, calling fn for each entry in it. done is set by the request's
// ACK or NLMSG_DONE; a kernel error (ENOENT: no such entry) is returned as
// a syscall.Errno. Messages for other sequence numbers are skipped.
func parseCTReply(b []byte, seq uint32, fn func(ctEntry)) (done bool, err error) {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return false, errCTMessage
		}
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		if n < nlmsgHdrLen || n > len(b) {
			return false, errCTMessage
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		mseq := binary.NativeEndian.Uint32(b[8:12])
		body := b[nlmsgHdrLen:n]
		b = b[min(len(b), (n+3)&^3):] // messages are 4-byte aligned
		if mseq != seq {
			continue
		}
		switch {
		case typ == nlmsgDone:
			return true, nil
		case typ == nlmsgError:
			if len(body) < 4 {
				return false, errCTMessage
			}
			if e := int32(binary.NativeEndian.Uint32(body)); e != 0 {
				return true, syscall.Errno(-e)
			}
			return true, nil
		case typ == nfnlSubsysCTNetlink<<8|ipctnlMsgCTNew:
			e, err := parseCTEntry(body)
			if err != nil {
				return false, err
			}
			fn(e)
		}
	}
	return false, nil
}

// parseCTEntry parses an entry message's body (nfgenmsg and attributes).
func parseCTEntry(b []byte) (ctEntry, error) {
	var e ctEntry
	if len(b) < nfgenHdrLen {
		return e, errCTMessage
	}
	ad, err := netlink.NewAttributeDecoder(b[nfgenHdrLen:])
	if err != nil {
		return e, fmt.Errorf("%w: %w", errCTMessage, err)
	}
	ad.ByteOrder = binary.BigEndian
	var haveOrig, haveReply bool
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				var err error
				e.orig, e.proto, err = parseCTTuple(nad)
				haveOrig = err == nil
				return err
			})
		case ctaTupleReply:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				var err error
				e.reply, _, err = parseCTTuple(nad)
				haveReply = err == nil
				return err
			})
		}
	}
	if err := ad.Err(); err != nil {
		return ctEntry{}, fmt.Errorf("%w: %w", errCTMessage, err)
	}
	if !haveOrig || !haveReply {
		return ctEntry{}, errCTMessage
	}
	return e, nil
}

func parseCTTuple(ad *netlink.AttributeDecoder) (t ctTuple, proto uint8, err error) {
	var src, dst netip.Addr
	var sport, dport uint16
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleIP:
			ad.Nested(func(ip *netlink.AttributeDecoder) error {
				for ip.Next() {
					a, ok := netip.AddrFromSlice(ip.Bytes())
					want := 4
					if ip.Type() == ctaIPv6Src || ip.Type() == ctaIPv6Dst {
						want = 16
					}
					switch ip.Type() {
					case ctaIPv4Src, ctaIPv6Src:
						if !ok || len(ip.Bytes()) != want {
							return errCTMessage
						}
						src = a
					case ctaIPv4Dst, ctaIPv6Dst:
						if !ok || len(ip.Bytes()) != want {
							return errCTMessage
						}
						dst = a
					}
				}
				return nil
			})
		case ctaTupleProto:
			ad.Nested(func(p *netlink.AttributeDecoder) error {
				for p.Next() {
					switch p.Type() {
					case ctaProtoNum:
						proto = p.Uint8()
					case ctaProtoSrc:
						sport = p.Uint16()
					case ctaProtoDst:
						dport = p.Uint16()
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return ctTuple{}, 0, err
	}
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return ctTuple{}, 0, errCTMessage
	}
	return ctTuple{netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)}, proto, nil
}
