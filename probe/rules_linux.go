package probe

import (
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/nsthread"
)

// Policy routing selectors (FRA_* in linux/fib_rules.h) a raw probe cannot
// carry to its route lookup: the kernel routes a raw IPPROTO_RAW datagram
// without its TCP ports, as protocol 255, and as ghostd's user.
const (
	fraUIDRange   = 20
	fraIPProto    = 22
	fraSportRange = 23
	fraDportRange = 24
)

// fibRuleHdrLen is sizeof(struct fib_rule_hdr).
const fibRuleHdrLen = 12

// unfollowedRules reports whether the namespace at nsPath routes by a
// selector the probes cannot reproduce (ip rule uidrange, ipproto, sport,
// dport): a socket's own segments may then take another route than its
// probes. The rule's mark, TOS and output interface are reproduced (route).
func unfollowedRules(nsPath string) (bool, error) {
	var c *netlink.Conn
	err := nsthread.InNetnsAt(nsPath, func() (err error) {
		c, err = netlink.Dial(unix.NETLINK_ROUTE, nil) // bound to the namespace it was made in
		return err
	})
	if err != nil {
		return false, fmt.Errorf("probe: routing rules: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETRULE, Flags: netlink.Request | netlink.Dump},
		Data:   make([]byte, fibRuleHdrLen), // family AF_UNSPEC: every family's rules
	})
	if err != nil {
		return false, fmt.Errorf("probe: routing rules: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < fibRuleHdrLen {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[fibRuleHdrLen:])
		if err != nil {
			return false, fmt.Errorf("probe: routing rules: %w", err)
		}
		for ad.Next() {
			switch ad.Type() {
			case fraUIDRange, fraIPProto, fraSportRange, fraDportRange:
				return true, nil
			}
		}
		if err := ad.Err(); err != nil {
			return false, fmt.Errorf("probe: routing rules: %w", err)
		}
	}
	return false, nil
}
