package exporter

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghostd/ghostd/pathidle"
)

// This file shows each destination's path idle-timeout estimate (package
// pathidle): GET /api/v1/paths, a table on the page, and
// ghostd_path_idle_timeout_seconds for the best evidenced few.

// PathSource is a session source that also estimates path idle timeouts
// (the engine); a snapshot whose Source is not one shows none.
type PathSource interface {
	Paths() []pathidle.Estimate
}

// PathsDocument is the JSON of GET /api/v1/paths. Fields may be added; none
// may be renamed or dropped.
type PathsDocument struct {
	Paths []Path `json:"paths"`
}

// Path is one destination's estimate.
type Path struct {
	// Destination is the peer's /24 (IPv4) or /64 (IPv6) and the service
	// port: the remote one for connections this host made
	// ("198.51.100.0/24:5432", "[2001:db8::/64]:443"), the local one for
	// connections it accepted ("clients 198.51.100.0/24 → :5432").
	Destination string `json:"destination"`
	// Direction is "outbound" (the remote port is the service) or
	// "inbound" (the socket's local end was a listener's).
	Direction string `json:"direction"`
	// AliveSamples and DeadSamples count the probes behind the estimate:
	// idle connections proved alive, and connections confirmed dead (each
	// once).
	AliveSamples int `json:"alive_samples"`
	DeadSamples  int `json:"dead_samples"`
	// MaxAliveIdleSeconds is the largest idle age proved alive,
	// MinDeadIdleSeconds the smallest confirmed dead; null when that side
	// has no sample.
	MaxAliveIdleSeconds *float64 `json:"max_alive_idle_seconds"`
	MinDeadIdleSeconds  *float64 `json:"min_dead_idle_seconds"`
	// Estimated is set when the samples bracket a timeout: the path forgets
	// idle flows after more than LowerSeconds and at most UpperSeconds.
	Estimated    bool     `json:"estimated"`
	LowerSeconds *float64 `json:"lower_seconds"`
	UpperSeconds *float64 `json:"upper_seconds"`
	// Why says why there is no estimate; empty when Estimated.
	Why string `json:"why,omitempty"`
	// Owners are the local processes (comm) whose connections were sampled.
	Owners []string `json:"owners"`
	// Keepalive is the recommended keepalive (below LowerSeconds), Advice
	// how to set it per owner; both only when Estimated.
	Keepalive *PathKeepalive `json:"keepalive,omitempty"`
	Advice    []PathAdvice   `json:"advice,omitempty"`
	// Text says it all in one sentence.
	Text string `json:"text"`
}

// PathKeepalive is a recommended TCP keepalive.
type PathKeepalive struct {
	IdleSeconds     float64 `json:"idle_seconds"`
	IntervalSeconds float64 `json:"interval_seconds"`
	Count           int     `json:"count"`
}

// PathAdvice is how one owner sets the keepalive ("sysctl" is the fallback).
type PathAdvice struct {
	Owner   string `json:"owner"`
	Setting string `json:"setting"`
}

// snapshotPaths returns the snapshot's estimates, none when its source
// does not make them.
func snapshotPaths(snap *Snapshot) []pathidle.Estimate {
	if snap == nil {
		return nil
	}
	if ps, ok := snap.Source.(PathSource); ok {
		return ps.Paths()
	}
	return nil
}

func secondsPtr(set bool, sec float64) *float64 {
	if !set {
		return nil
	}
	return &sec
}

// PathsOf converts estimates to their JSON form, in the same order.
func PathsOf(es []pathidle.Estimate) []Path {
	out := make([]Path, 0, len(es))
	for i := range es {
		e := &es[i]
		p := Path{
			Destination: e.Dest.String(), Direction: e.Dest.Dir.String(), AliveSamples: e.Alive, DeadSamples: e.Dead,
			MaxAliveIdleSeconds: secondsPtr(e.Alive > 0, e.MaxAlive.Seconds()),
			MinDeadIdleSeconds:  secondsPtr(e.Dead > 0, e.MinDead.Seconds()),
			Estimated:           e.Ready, Why: e.Why, Owners: e.Owners, Text: e.Text(),
			LowerSeconds: secondsPtr(e.Ready, e.Lower.Seconds()), UpperSeconds: secondsPtr(e.Ready, e.Upper.Seconds()),
		}
		if p.Owners == nil {
			p.Owners = []string{}
		}
		if e.Ready {
			p.Keepalive = &PathKeepalive{IdleSeconds: e.Keepalive.Idle.Seconds(), IntervalSeconds: e.Keepalive.Interval.Seconds(), Count: e.Keepalive.Count}
			for _, a := range e.Advice {
				p.Advice = append(p.Advice, PathAdvice{Owner: a.Owner, Setting: a.Setting})
			}
		}
		out = append(out, p)
	}
	return out
}

func servePaths(w http.ResponseWriter, s *Store, log *slog.Logger) {
	snap := lastSnapshot(w, s, log)
	if snap == nil {
		return
	}
	writeJSON(w, http.StatusOK, PathsDocument{Paths: PathsOf(snapshotPaths(snap))}, log)
}

// MaxPathSeries is how many destinations ghostd_path_idle_timeout_seconds
// exports at most: the estimated ones with the most samples, two series
// (bound="lower", "upper") each. The JSON has every destination.
const MaxPathSeries = 10

var pathIdleDesc = desc("path_idle_timeout_seconds",
	"Estimated idle timeout of the network path to a destination (remote /24 or /64 and port; for accepted connections, the clients' /24 or /64 and the local port): the flow was proved alive at the lower bound and dead at the upper. "+
		"Only the 10 estimated destinations with the most samples.", "destination", "bound")

func collectPaths(ch chan<- prometheus.Metric, snap *Snapshot) {
	n := 0
	for _, e := range snapshotPaths(snap) {
		if !e.Ready { // estimated ones come first
			break
		}
		if n == MaxPathSeries {
			break
		}
		n++
		d := e.Dest.String()
		ch <- constMetric(pathIdleDesc, prometheus.GaugeValue, e.Lower.Seconds(), d, "lower")
		ch <- constMetric(pathIdleDesc, prometheus.GaugeValue, e.Upper.Seconds(), d, "upper")
	}
}

// maxPagePaths bounds the page's path table.
const maxPagePaths = 20

// pagePaths is the page's path table: at most maxPagePaths, estimated first.
func pagePaths(snap *Snapshot) []Path {
	ps := PathsOf(snapshotPaths(snap))
	return ps[:min(len(ps), maxPagePaths)]
}
