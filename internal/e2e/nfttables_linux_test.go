package e2e

import (
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// nftTableExists reports whether ns has the nftables table family/name,
// asking the kernel with a netlink dump of its tables. nft(8) cannot be
// asked: version 1.0.6 aborts any listing, `list tables -t` included
// (mergesort.c: concat_expr_msort_value: Assertion `ilen > 0'), while a set
// of ghostd's reset guard holds elements, that is, for most of the time the
// guard is up.
func nftTableExists(ns *testnet.NS, family byte, name string) (bool, error) {
	found := false
	err := ns.Do(func() error {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		msgs, err := c.Execute(netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE),
				Flags: netlink.Request | netlink.Dump,
			},
			Data: []byte{family, unix.NFNETLINK_V0, 0, 0}, // nfgenmsg
		})
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if len(m.Data) < 4 {
				continue
			}
			ad, err := netlink.NewAttributeDecoder(m.Data[4:])
			if err != nil {
				return err
			}
			for ad.Next() {
				if ad.Type() == unix.NFTA_TABLE_NAME && ad.String() == name {
					found = true
				}
			}
			if err := ad.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("e2e: list nftables tables in %s: %w", ns.Name, err)
	}
	return found, nil
}
