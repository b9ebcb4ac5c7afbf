package engine

import "github.com/ghostd/ghostd/probe"

// The host hint is packed in one byte of a verdict (verdictState.host):
// -1 not asked, 0 unreachable, 1 reachable, 2 NATed in its namespace,
// 3 a shared address (probe/hosthint.go).

func packHost(r probe.Result) int8 {
	switch {
	case r.HostHint == probe.HostHintNAT:
		return 2
	case r.HostHint == probe.HostHintShared:
		return 3
	case r.HostReachable == nil:
		return -1
	case *r.HostReachable:
		return 1
	}
	return 0
}

func unpackHost(h int8, r *probe.Result) {
	switch h {
	case 0, 1:
		ok := h == 1
		r.HostReachable = &ok
		r.HostHint = probe.HostHintUnreachable
		if ok {
			r.HostHint = probe.HostHintReachable
		}
	case 2:
		r.HostHint = probe.HostHintNAT
	case 3:
		r.HostHint = probe.HostHintShared
	}
}
