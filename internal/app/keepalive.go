package app

import (
	"context"

	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// keepaliveTap is the prober's SeqReader, passing on what it reads, and
// handing each socket's own keepalive settings (TCP_KEEPIDLE, TCP_KEEPINTVL,
// TCP_KEEPCNT, TCP_USER_TIMEOUT, read by the BPF iterator along with the
// sequence numbers) to sink: the tracker then uses them instead of the
// namespace's sysctls, so a socket whose own kernel finds a dead peer sooner
// than ghostd is left to it from the next scan on.
type keepaliveTap struct {
	probe.SeqReader
	sink func(inventory.Key, tracker.KeepaliveSettings)
}

func (k *keepaliveTap) ReadSeq(ctx context.Context, nsPath string, cookies []uint64) (map[uint64]probe.SeqState, error) {
	m, err := k.SeqReader.ReadSeq(ctx, nsPath, cookies)
	if len(m) == 0 || k.sink == nil {
		return m, err
	}
	netns, ok := nsInodeOf(nsPath)
	if !ok {
		return m, err
	}
	for cookie, st := range m {
		k.sink(inventory.Key{Netns: netns, Cookie: cookie}, keepaliveOf(&st))
	}
	return m, err
}

// keepaliveOf is the tracker's view of a socket's own settings.
func keepaliveOf(st *probe.SeqState) tracker.KeepaliveSettings {
	return tracker.KeepaliveSettings{Time: st.KeepTime, Intvl: st.KeepIntvl, Probes: st.KeepProbes, UserTimeout: st.UserTimeout}
}
