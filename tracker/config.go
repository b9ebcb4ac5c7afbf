package tracker

import (
	"errors"
	"fmt"
	"time"
)

// Config holds the classification thresholds. A zero field means its default.
type Config struct {
	// Idle: an ESTABLISHED socket that has neither received nor sent data for
	// this long (tcpi_last_data_recv and tcpi_last_data_sent) is idle.
	Idle time.Duration
	// CloseWait, FinWait2 and LastAck: how long a socket may sit in that state.
	CloseWait time.Duration
	FinWait2  time.Duration
	LastAck   time.Duration
	// Stall: how long the zero-window (persist) timer may run.
	Stall time.Duration
	// Horizon is how long ghostd takes to confirm a dead idle peer after
	// its last answer: Idle, plus up to one scan interval until the scan
	// that sees it, plus one probe round (the caller knows both). A socket
	// whose own keepalive gives evidence (keepalive_failing) or ends the
	// connection no later than this is left to its kernel; any other idle
	// socket is an idle suspect, keepalive on or not. Below Idle (zero
	// included) it is Idle, which errs toward probing.
	Horizon time.Duration
	// RetransBackoff: how many times in a row the kernel's own probing must
	// go unanswered before the socket counts as retransmitting: retransmission
	// timeouts (idiag_retrans, tcpi_retransmits) under the retransmit timer,
	// window probes (idiag_retrans) under the persist timer. (tcpi_backoff is
	// not used: it also grows while a live peer keeps its window shut.)
	RetransBackoff uint8
	// MaxEntries caps the sockets remembered at once (about 290 bytes each),
	// shared fairly: once the cap is reached, a namespace may still add
	// sockets while it holds fewer than MaxEntries divided by the number of
	// namespaces, so one busy namespace cannot blind ghostd to the others.
	// The total stays below twice MaxEntries. Refused sockets are counted
	// (Refused). Zero means DefaultMaxEntries.
	MaxEntries int
}

// Defaults. A dead idle peer must be confirmed within 2 minutes of going quiet
// with the daemon scanning every ~15 s and probing 3 times 1 s apart: with
// Idle = 60 s the worst case is 60 + 15 + 3 = 78 s, which leaves room for a
// slow scan or one missed scan (idle connections cost one ACK each to verify,
// so a shorter Idle would only probe more healthy pools). FinWait2 is above
// the kernel's tcp_fin_timeout (60 s) so that orphaned FIN_WAIT2 sockets the
// kernel reaps by itself are not reported. A healthy LAST_ACK lasts one
// round trip; one to a dead peer lives ~100 s of FIN retransmissions, so 30 s
// flags those early. Two retransmission timeouts in a row without an ACK
// (≥ 600 ms of silence at the 200 ms minimum RTO) are rare on a live path,
// and a probe settles it anyway; one is common (a tail loss), and a window
// probe can go unanswered once because Linux rate-limits its replies to
// out-of-window segments (one per 500 ms).
const (
	DefaultIdle           = 60 * time.Second
	DefaultCloseWait      = 60 * time.Second
	DefaultStall          = 60 * time.Second
	DefaultFinWait2       = 90 * time.Second
	DefaultLastAck        = 30 * time.Second
	DefaultRetransBackoff = 2
	// DefaultMaxEntries bounds the tracker near 140 MiB.
	DefaultMaxEntries = 500_000
	// DefaultHorizon is DefaultIdle plus the daemon's default 15 s scan
	// interval and a default probe round (3 attempts 1 s apart, the last
	// one given 1 s).
	DefaultHorizon = DefaultIdle + 15*time.Second + 3*time.Second
)

// DefaultConfig returns the default thresholds.
func DefaultConfig() Config {
	return Config{
		Idle: DefaultIdle, CloseWait: DefaultCloseWait, Stall: DefaultStall,
		FinWait2: DefaultFinWait2, LastAck: DefaultLastAck, RetransBackoff: DefaultRetransBackoff,
		MaxEntries: DefaultMaxEntries,
		Horizon:    DefaultHorizon,
	}
}

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("tracker: invalid config")

// Validate reports a negative duration.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"idle", c.Idle}, {"close-wait", c.CloseWait}, {"stall", c.Stall}, {"fin-wait2", c.FinWait2}, {"last-ack", c.LastAck}, {"horizon", c.Horizon}} {
		if f.d < 0 {
			return fmt.Errorf("%w: %s %v is negative", ErrConfig, f.name, f.d)
		}
	}
	return nil
}

// withDefaults replaces zero fields (and negative durations) by their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	for _, p := range []struct{ v, def *time.Duration }{
		{&c.Idle, &d.Idle}, {&c.CloseWait, &d.CloseWait}, {&c.Stall, &d.Stall},
		{&c.FinWait2, &d.FinWait2}, {&c.LastAck, &d.LastAck},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	if c.RetransBackoff == 0 {
		c.RetransBackoff = d.RetransBackoff
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	c.Horizon = max(c.Horizon, c.Idle)
	return c
}
