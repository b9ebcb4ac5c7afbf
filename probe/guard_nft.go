package probe

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
)

// This file builds the nf_tables netlink messages of the reset guard
// (guard.go), as the uapi header include/uapi/linux/netfilter/nf_tables.h
// defines them: the table, its chain and rules, and the set elements. It is
// pure: guard_linux.go sends the messages.
//
// The ruleset, as `nft list table inet ghostd` (nft 1.0.6) shows it, with
// one element (sequence number 7) in rst4:
//
//	table inet ghostd {
//		flags owner
//
//		set rst4 {
//			type ipv4_addr . inet_service . ipv4_addr . inet_service . mark
//			flags timeout
//			elements = { 192.0.2.2 . 40000 . 198.51.100.2 . 5432 . 0x00000007 timeout 1m expires 59s996ms }
//		}
//
//		set rst6 {
//			type ipv6_addr . inet_service . ipv6_addr . inet_service . mark
//			flags timeout
//		}
//
//		chain guard {
//			type filter hook prerouting priority raw - 10; policy accept;
//			tcp flags rst ip saddr . tcp sport . ip daddr . tcp dport . tcp sequence @rst4 counter packets 0 bytes 0 drop
//			tcp flags rst ip6 saddr . tcp sport . ip6 daddr . tcp dport . tcp sequence @rst6 counter packets 0 bytes 0 drop
//		}
//	}
//
// The rule turns the sequence number to host byte order before the lookup
// (a byteorder expression nft does not print), so that nft prints it right
// as a mark; see nftTypeMark.
// Priority -310 is before raw (-300) and conntrack (-200): the RST never
// reaches conntrack or the socket.

// nf_tables and nfnetlink constants (include/uapi/linux/netfilter/*.h).
const (
	nfnlSubsysNFTables = 10
	nfnlMsgBatchBegin  = 0x10
	nfnlMsgBatchEnd    = 0x11

	nftMsgNewTable   = 0
	nftMsgDelTable   = 2
	nftMsgNewChain   = 3
	nftMsgNewRule    = 6
	nftMsgNewSet     = 9
	nftMsgNewSetElem = 12
	nftMsgDelSetElem = 14

	nfprotoInet = 1
	nfprotoIPv4 = 2
	nfprotoIPv6 = 10
	ipprotoTCP  = 6

	nftTableFOwner = 0x2

	nftaTableName  = 1
	nftaTableFlags = 2

	nftaChainTable   = 1
	nftaChainName    = 3
	nftaChainHook    = 4
	nftaChainPolicy  = 5
	nftaChainType    = 7
	nftaHookHooknum  = 1
	nftaHookPrio     = 2
	nfInetPreRouting = 0
	nfAccept         = 1
	nfDrop           = 0

	nftaSetTable      = 1
	nftaSetName       = 2
	nftaSetFlags      = 3
	nftaSetKeyType    = 4
	nftaSetKeyLen     = 5
	nftaSetDesc       = 9
	nftaSetID         = 10
	nftaSetDescConcat = 2
	nftaSetFieldLen   = 1
	nftSetTimeout     = 0x10
	nftSetConcat      = 0x80

	nftaSetElemListTable    = 1
	nftaSetElemListSet      = 2
	nftaSetElemListElements = 3
	nftaSetElemKey          = 1
	nftaSetElemTimeout      = 4

	nftaListElem    = 1
	nftaDataValue   = 1
	nftaDataVerdict = 2
	nftaVerdictCode = 1

	nftaRuleTable       = 1
	nftaRuleChain       = 2
	nftaRuleExpressions = 4
	nftaExprName        = 1
	nftaExprData        = 2

	nftaMetaDreg   = 1
	nftaMetaKey    = 2
	nftMetaNFProto = 15
	nftMetaL4Proto = 16

	nftaCmpSreg = 1
	nftaCmpOp   = 2
	nftaCmpData = 3
	nftCmpEq    = 0
	nftCmpNeq   = 1

	nftaPayloadDreg     = 1
	nftaPayloadBase     = 2
	nftaPayloadOffset   = 3
	nftaPayloadLen      = 4
	nftPayloadNetwork   = 1
	nftPayloadTransport = 2

	nftaBitwiseSreg = 1
	nftaBitwiseDreg = 2
	nftaBitwiseLen  = 3
	nftaBitwiseMask = 4
	nftaBitwiseXor  = 5

	nftaLookupSet   = 1
	nftaLookupSreg  = 2
	nftaLookupSetID = 4

	nftaImmDreg = 1
	nftaImmData = 2

	nftaByteorderSreg = 1
	nftaByteorderDreg = 2
	nftaByteorderOp   = 3
	nftaByteorderLen  = 4
	nftaByteorderSize = 5
	nftByteorderNtoh  = 0

	nftRegVerdict = 0
	nftReg1       = 1
	nftReg32_00   = 8

	// nft's datatype ids (src/datatype.h), for the set's key type: nft
	// uses them to print elements. The sequence number is a `mark`, nft's
	// 32-bit host-order integer: `integer` has no size, and nft 1.0.6
	// aborts listing a set of more than one element with such a field
	// (mergesort.c: concat_expr_msort_value: Assertion `ilen > 0'), while
	// `typeof ... . tcp sequence`, which gives the field its size, is
	// limited to four fields (NFTNL_UDATA_SET_KEY_CONCAT_NEST_MAX).
	nftTypeIPAddr      = 7
	nftTypeIP6Addr     = 8
	nftTypeInetService = 13
	nftTypeMark        = 19
)

// guardChain is the chain's name; guardPriority its hook priority.
const (
	guardChain    = "guard"
	guardPriority = -310
)

// guardSet returns the set for an address family.
func guardSet(v4 bool) string {
	if v4 {
		return "rst4"
	}
	return "rst6"
}

// guardKey is a set element's key: the RST's source address and port, its
// destination address and port, and its sequence number, each field padded
// to 4 bytes as nf_tables concatenations are. Addresses and ports are in
// network byte order (the payload expression loads them from the packet as
// they are); the sequence number is in host byte order, as the rule turns
// it (nft prints a mark field so). remote and local must be of one family,
// unmapped.
func guardKey(local, remote netip.AddrPort, seq uint32) []byte {
	a, b := remote.Addr().AsSlice(), local.Addr().AsSlice()
	k := make([]byte, 0, 2*len(a)+12)
	k = append(k, a...)
	k = binary.BigEndian.AppendUint16(k, remote.Port())
	k = append(k, 0, 0)
	k = append(k, b...)
	k = binary.BigEndian.AppendUint16(k, local.Port())
	k = append(k, 0, 0)
	return binary.NativeEndian.AppendUint32(k, seq)
}

// nfgen is the nfgenmsg header: family, version 0, resource id.
func nfgen(family uint8, resID uint16) []byte {
	return []byte{family, 0, byte(resID >> 8), byte(resID)}
}

func nftMsg(typ uint16, flags netlink.HeaderFlags, family uint8, attrs func(ae *netlink.AttributeEncoder)) (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	attrs(ae)
	b, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysNFTables<<8 | typ), Flags: netlink.Request | flags},
		Data:   append(nfgen(family, 0), b...),
	}, nil
}

// batch wraps nf_tables messages in the batch nfnetlink wants them in.
func batch(msgs ...netlink.Message) []netlink.Message {
	begin := netlink.Message{Header: netlink.Header{Type: nfnlMsgBatchBegin, Flags: netlink.Request}, Data: nfgen(0, nfnlSubsysNFTables)}
	end := netlink.Message{Header: netlink.Header{Type: nfnlMsgBatchEnd, Flags: netlink.Request}, Data: nfgen(0, nfnlSubsysNFTables)}
	return append(append([]netlink.Message{begin}, msgs...), end)
}

// delTableMsg deletes a leftover table (one a ghostd without the owner
// flag, or someone else, left).
func delTableMsg() (netlink.Message, error) {
	return nftMsg(nftMsgDelTable, netlink.Acknowledge, nfprotoInet, func(ae *netlink.AttributeEncoder) {
		ae.String(nftaTableName, GuardTable)
	})
}

// guardRuleset returns the messages that create the table, its sets, its
// chain and its two rules, each asking for an acknowledgement.
func guardRuleset() ([]netlink.Message, error) {
	var msgs []netlink.Message
	add := func(m netlink.Message, err error) error {
		msgs = append(msgs, m)
		return err
	}
	create := netlink.Acknowledge | netlink.Create | netlink.Excl
	if err := add(nftMsg(nftMsgNewTable, create, nfprotoInet, func(ae *netlink.AttributeEncoder) {
		ae.String(nftaTableName, GuardTable)
		ae.Uint32(nftaTableFlags, nftTableFOwner)
	})); err != nil {
		return nil, err
	}
	for i, v4 := range []bool{true, false} {
		addrType, addrLen := uint32(nftTypeIPAddr), uint32(4)
		if !v4 {
			addrType, addrLen = nftTypeIP6Addr, 16
		}
		fields := []uint32{addrLen, 2, addrLen, 2, 4}
		types := []uint32{addrType, nftTypeInetService, addrType, nftTypeInetService, nftTypeMark}
		var keyType uint32
		for _, t := range types {
			keyType = keyType<<6 | t
		}
		if err := add(nftMsg(nftMsgNewSet, create, nfprotoInet, func(ae *netlink.AttributeEncoder) {
			ae.String(nftaSetTable, GuardTable)
			ae.String(nftaSetName, guardSet(v4))
			ae.Uint32(nftaSetFlags, nftSetTimeout|nftSetConcat)
			ae.Uint32(nftaSetKeyType, keyType)
			ae.Uint32(nftaSetKeyLen, 2*addrLen+12)
			ae.Uint32(nftaSetID, uint32(i+1))
			ae.Nested(nftaSetDesc, func(nae *netlink.AttributeEncoder) error {
				nae.Nested(nftaSetDescConcat, func(cae *netlink.AttributeEncoder) error {
					for _, f := range fields {
						cae.Nested(nftaListElem, func(fae *netlink.AttributeEncoder) error {
							fae.Uint32(nftaSetFieldLen, f)
							return nil
						})
					}
					return nil
				})
				return nil
			})
		})); err != nil {
			return nil, err
		}
	}
	if err := add(nftMsg(nftMsgNewChain, create, nfprotoInet, func(ae *netlink.AttributeEncoder) {
		ae.String(nftaChainTable, GuardTable)
		ae.String(nftaChainName, guardChain)
		ae.Nested(nftaChainHook, func(hae *netlink.AttributeEncoder) error {
			hae.Uint32(nftaHookHooknum, nfInetPreRouting)
			hae.Int32(nftaHookPrio, guardPriority)
			return nil
		})
		ae.Uint32(nftaChainPolicy, nfAccept)
		ae.String(nftaChainType, "filter")
	})); err != nil {
		return nil, err
	}
	for i, v4 := range []bool{true, false} {
		if err := add(ruleMsg(guardRule(v4, uint32(i+1)))); err != nil {
			return nil, err
		}
	}
	return msgs, nil
}

// ruleMsg appends a rule of exprs to the guard's chain.
func ruleMsg(exprs []nftExpr) (netlink.Message, error) {
	return nftMsg(nftMsgNewRule, netlink.Acknowledge|netlink.Create|netlink.Append, nfprotoInet, func(ae *netlink.AttributeEncoder) {
		ae.String(nftaRuleTable, GuardTable)
		ae.String(nftaRuleChain, guardChain)
		ae.Nested(nftaRuleExpressions, func(eae *netlink.AttributeEncoder) error {
			for _, ex := range exprs {
				eae.Nested(nftaListElem, func(xae *netlink.AttributeEncoder) error {
					xae.String(nftaExprName, ex.name)
					if ex.data != nil {
						xae.Nested(nftaExprData, ex.data)
					}
					return nil
				})
			}
			return nil
		})
	})
}

type nftExpr struct {
	name string
	data func(*netlink.AttributeEncoder) error
}

func meta(key uint32) nftExpr {
	return nftExpr{"meta", func(ae *netlink.AttributeEncoder) error {
		ae.Uint32(nftaMetaKey, key)
		ae.Uint32(nftaMetaDreg, nftReg1)
		return nil
	}}
}

func cmpReg(op uint32, value []byte) nftExpr {
	return nftExpr{"cmp", func(ae *netlink.AttributeEncoder) error {
		ae.Uint32(nftaCmpSreg, nftReg1)
		ae.Uint32(nftaCmpOp, op)
		ae.Nested(nftaCmpData, func(dae *netlink.AttributeEncoder) error {
			dae.Bytes(nftaDataValue, value)
			return nil
		})
		return nil
	}}
}

func payload(base, offset, length, reg uint32) nftExpr {
	return nftExpr{"payload", func(ae *netlink.AttributeEncoder) error {
		ae.Uint32(nftaPayloadDreg, reg)
		ae.Uint32(nftaPayloadBase, base)
		ae.Uint32(nftaPayloadOffset, offset)
		ae.Uint32(nftaPayloadLen, length)
		return nil
	}}
}

// guardRule is the rule of one family: nfproto, TCP, the RST flag, then the
// reversed 4-tuple and the sequence number (turned to host byte order, see
// guardKey) looked up in the family's set (setID: the set's id in the same
// batch), counted and dropped.
func guardRule(v4 bool, setID uint32) []nftExpr {
	proto, saddr, daddr, alen := byte(nfprotoIPv4), uint32(12), uint32(16), uint32(4)
	if !v4 {
		proto, saddr, daddr, alen = nfprotoIPv6, 8, 24, 16
	}
	reg := func(offset uint32) uint32 { return nftReg32_00 + offset/4 } // 4-byte registers
	return []nftExpr{
		meta(nftMetaNFProto), cmpReg(nftCmpEq, []byte{proto}),
		meta(nftMetaL4Proto), cmpReg(nftCmpEq, []byte{ipprotoTCP}),
		payload(nftPayloadTransport, 13, 1, nftReg1),
		{"bitwise", func(ae *netlink.AttributeEncoder) error {
			ae.Uint32(nftaBitwiseSreg, nftReg1)
			ae.Uint32(nftaBitwiseDreg, nftReg1)
			ae.Uint32(nftaBitwiseLen, 1)
			ae.Nested(nftaBitwiseMask, func(dae *netlink.AttributeEncoder) error { dae.Bytes(nftaDataValue, []byte{0x04}); return nil })
			ae.Nested(nftaBitwiseXor, func(dae *netlink.AttributeEncoder) error { dae.Bytes(nftaDataValue, []byte{0}); return nil })
			return nil
		}},
		cmpReg(nftCmpNeq, []byte{0}),
		payload(nftPayloadNetwork, saddr, alen, reg(0)),
		payload(nftPayloadTransport, 0, 2, reg(alen)),
		payload(nftPayloadNetwork, daddr, alen, reg(alen+4)),
		payload(nftPayloadTransport, 2, 2, reg(2*alen+4)),
		payload(nftPayloadTransport, 4, 4, reg(2*alen+8)),
		{"byteorder", func(ae *netlink.AttributeEncoder) error {
			ae.Uint32(nftaByteorderSreg, reg(2*alen+8))
			ae.Uint32(nftaByteorderDreg, reg(2*alen+8))
			ae.Uint32(nftaByteorderOp, nftByteorderNtoh)
			ae.Uint32(nftaByteorderLen, 4)
			ae.Uint32(nftaByteorderSize, 4)
			return nil
		}},
		{"lookup", func(ae *netlink.AttributeEncoder) error {
			ae.String(nftaLookupSet, guardSet(v4))
			ae.Uint32(nftaLookupSreg, nftReg32_00)
			ae.Uint32(nftaLookupSetID, setID)
			return nil
		}},
		{"counter", nil},
		{"immediate", func(ae *netlink.AttributeEncoder) error {
			ae.Uint32(nftaImmDreg, nftRegVerdict)
			ae.Nested(nftaImmData, func(dae *netlink.AttributeEncoder) error {
				dae.Nested(nftaDataVerdict, func(vae *netlink.AttributeEncoder) error {
					vae.Uint32(nftaVerdictCode, nfDrop)
					return nil
				})
				return nil
			})
			return nil
		}},
	}
}

// elemMsg adds (timeout > 0) or deletes one set element.
func elemMsg(add bool, local, remote netip.AddrPort, seq uint32, timeout time.Duration) (netlink.Message, error) {
	typ, flags := uint16(nftMsgDelSetElem), netlink.Acknowledge
	if add {
		typ, flags = nftMsgNewSetElem, netlink.Acknowledge|netlink.Create
	}
	return nftMsg(typ, flags, nfprotoInet, func(ae *netlink.AttributeEncoder) {
		ae.String(nftaSetElemListTable, GuardTable)
		ae.String(nftaSetElemListSet, guardSet(local.Addr().Is4()))
		ae.Nested(nftaSetElemListElements, func(lae *netlink.AttributeEncoder) error {
			lae.Nested(nftaListElem, func(eae *netlink.AttributeEncoder) error {
				eae.Nested(nftaSetElemKey, func(kae *netlink.AttributeEncoder) error {
					kae.Bytes(nftaDataValue, guardKey(local, remote, seq))
					return nil
				})
				if add {
					eae.Uint64(nftaSetElemTimeout, uint64(max(timeout.Milliseconds(), 1)))
				}
				return nil
			})
			return nil
		})
	})
}
