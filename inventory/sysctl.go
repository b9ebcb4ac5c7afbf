package inventory

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ghostd/ghostd/internal/positive"
)

// TCPSysctls are the settings of one network namespace that decide when its
// kernel gives up on a silent peer: net.ipv4.tcp_keepalive_time,
// tcp_keepalive_intvl, tcp_keepalive_probes (used by every keepalive socket
// whose own TCP_KEEPIDLE, TCP_KEEPINTVL or TCP_KEEPCNT is unset) and
// tcp_retries2 (data in flight). Read says whether they were read from the
// namespace; otherwise they are the kernel's defaults.
type TCPSysctls struct {
	KeepaliveTime   time.Duration
	KeepaliveIntvl  time.Duration
	KeepaliveProbes int
	Retries2        int
	Read            bool
}

// Kernel defaults (include/net/tcp.h): TCP_KEEPALIVE_TIME 7200 s,
// TCP_KEEPALIVE_INTVL 75 s, TCP_KEEPALIVE_PROBES 9, TCP_RETR2 15.
const (
	DefaultKeepaliveTime   = 7200 * time.Second
	DefaultKeepaliveIntvl  = 75 * time.Second
	DefaultKeepaliveProbes = 9
	DefaultRetries2        = 15
)

// DefaultTCPSysctls returns the kernel's defaults, Read false.
func DefaultTCPSysctls() TCPSysctls {
	return TCPSysctls{
		KeepaliveTime: DefaultKeepaliveTime, KeepaliveIntvl: DefaultKeepaliveIntvl,
		KeepaliveProbes: DefaultKeepaliveProbes, Retries2: DefaultRetries2,
	}
}

// OrDefaults returns s with every unset (zero or negative) field replaced by
// the kernel's default.
func (s TCPSysctls) OrDefaults() TCPSysctls {
	s.KeepaliveTime = positive.Or(s.KeepaliveTime, DefaultKeepaliveTime)
	s.KeepaliveIntvl = positive.Or(s.KeepaliveIntvl, DefaultKeepaliveIntvl)
	s.KeepaliveProbes = positive.Or(s.KeepaliveProbes, DefaultKeepaliveProbes)
	s.Retries2 = positive.Or(s.Retries2, DefaultRetries2)
	return s
}

// sysctlFiles are the files under /proc/sys/net/ipv4 that TCPSysctls reads,
// in the order parseSysctls expects them.
var sysctlFiles = [...]string{"tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes", "tcp_retries2"}

// parseSysctls turns the contents of sysctlFiles into TCPSysctls. Each value
// is a decimal integer (seconds for the two times) with optional white space.
func parseSysctls(vals [len(sysctlFiles)][]byte) (TCPSysctls, error) {
	var n [len(sysctlFiles)]int
	for i, v := range vals {
		x, err := strconv.Atoi(strings.TrimSpace(string(v)))
		if err != nil || x < 0 || x > 1<<31-1 {
			return TCPSysctls{}, fmt.Errorf("inventory: net.ipv4.%s: bad value %q", sysctlFiles[i], v)
		}
		n[i] = x
	}
	return TCPSysctls{
		KeepaliveTime:   time.Duration(n[0]) * time.Second,
		KeepaliveIntvl:  time.Duration(n[1]) * time.Second,
		KeepaliveProbes: n[2],
		Retries2:        n[3],
		Read:            true,
	}, nil
}
