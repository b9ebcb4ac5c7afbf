package pathidle

import (
	"fmt"
	"time"
)

// Keepalive is a recommended TCP keepalive: the first probe after Idle
// without traffic, then every Interval, giving up after Count unanswered.
type Keepalive struct {
	Idle, Interval time.Duration
	Count          int
}

// Recommend returns keepalive settings for a path known to keep idle flows
// for lower: Idle is 80 % of lower (whole seconds; whole 10 s from a
// minute up), at least 1 s, so the first keepalive crosses the path well
// before it forgets the flow; Interval a third of that; 3 probes.
func Recommend(lower time.Duration) Keepalive {
	idle := (lower * 4 / 5).Truncate(time.Second)
	if idle >= time.Minute {
		idle = idle.Truncate(10 * time.Second)
	}
	idle = max(idle, time.Second)
	return Keepalive{Idle: idle, Interval: max((idle / 3).Truncate(time.Second), time.Second), Count: 3}
}

// Advice is how to set a keepalive for one owner.
type Advice struct {
	// Owner is the process name it applies to, or "sysctl" for the host-wide
	// fallback.
	Owner string
	// Setting is what to configure.
	Setting string
}

// AdviceFor returns the setting for each owner whose server or runtime is
// known (PostgreSQL, Redis, nginx, HAProxy, Java), or the kernel's sysctl
// when none is.
func AdviceFor(owners []string, k Keepalive) []Advice {
	var out []Advice
	for _, o := range owners {
		if s := settingFor(o, k); s != "" {
			out = append(out, Advice{Owner: o, Setting: s})
		}
	}
	if len(out) == 0 {
		out = append(out, Advice{Owner: "sysctl", Setting: settingFor("sysctl", k)})
	}
	return out
}

// settingFor is the setting for a process name, "" when it is not one whose
// keepalive ghostd knows how to set. "go" and "sysctl" name the Go runtime
// and the host-wide fallback.
func settingFor(comm string, k Keepalive) string {
	i, n, c := int(k.Idle.Seconds()), int(k.Interval.Seconds()), k.Count
	switch comm {
	case "postgres", "postmaster":
		return fmt.Sprintf("postgresql.conf: tcp_keepalives_idle = %d, tcp_keepalives_interval = %d, tcp_keepalives_count = %d (PostgreSQL keeps keepalive on; 0 means the kernel's 7200 s)", i, n, c)
	case "redis-server":
		return fmt.Sprintf("redis.conf: tcp-keepalive %d (Redis probes every third of it, 3 times)", i)
	case "nginx":
		return fmt.Sprintf("nginx: listen ... so_keepalive=%ds:%ds:%d (and proxy_socket_keepalive on; for upstream connections, which use the sysctls)", i, n, c)
	case "haproxy":
		return fmt.Sprintf("haproxy: option tcpka, clitcpka-idle %ds, clitcpka-intvl %ds, clitcpka-cnt %d (srvtcpka-* towards servers); or timeout client/server/tunnel below %ds so HAProxy closes idle connections first", i, n, c, i)
	case "java":
		return fmt.Sprintf("Java: socket.setKeepAlive(true), then setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPIDLE, %d), TCP_KEEPINTERVAL %d, TCP_KEEPCOUNT %d (JDK 11+; JDBC drivers: their tcpKeepAlive option)", i, n, c)
	case "go":
		return fmt.Sprintf("Go: net.Dialer/ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: %d * time.Second, Interval: %d * time.Second, Count: %d}} (Go 1.23+; the default 15 s already is below)", i, n, c)
	case "sysctl":
		return fmt.Sprintf("sysctl net.ipv4.tcp_keepalive_time=%d net.ipv4.tcp_keepalive_intvl=%d net.ipv4.tcp_keepalive_probes=%d (per network namespace; only for sockets whose application turns SO_KEEPALIVE on)", i, n, c)
	}
	return ""
}
