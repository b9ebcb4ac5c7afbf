package exporter

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

const metricPrefix = "ghostd_"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(metricPrefix+name, help, labels, nil)
}

// constMetric is prometheus.MustNewConstMetric with every label value made
// valid UTF-8 first. Label values come from names other users control (a
// namespace's name, a process's comm set with prctl(PR_SET_NAME)), and
// client_golang panics on invalid UTF-8: the registry then drops every
// series collected after it, ghost counts included, and alerts go quiet.
func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	for i, l := range labels {
		if !utf8.ValidString(l) {
			labels = slices.Clone(labels)
			labels[i] = strings.ToValidUTF8(l, "\uFFFD")
		}
	}
	return prometheus.MustNewConstMetric(d, t, v, labels...)
}

// collector exports a Store. Describe sends fixed descriptors; Collect reads
// the latest snapshot and counters under the store's lock.
type collector struct {
	s *Store

	ghostSessions   *prometheus.Desc
	suspectSessions *prometheus.Desc
	sockets         *prometheus.Desc
	oldestGhostAge  *prometheus.Desc
	probes          *prometheus.Desc
	probesNAT       *prometheus.Desc
	probeReplies    *prometheus.Desc
	probeRejected   *prometheus.Desc
	captureDrops    *prometheus.Desc
	probeRTT        *prometheus.Desc
	killed          *prometheus.Desc
	killErrors      *prometheus.Desc
	killSupported   *prometheus.Desc
	scanDuration    *prometheus.Desc
	lastScan        *prometheus.Desc
	netnsSuccess    *prometheus.Desc
	netnsDuration   *prometheus.Desc
	netnsInfo       *prometheus.Desc
	podInfo         *prometheus.Desc
	buildInfo       *prometheus.Desc
	reloadOK        *prometheus.Desc
	reloadTime      *prometheus.Desc
	probeMode       *prometheus.Desc
	capability      *prometheus.Desc
	nsSkipped       *prometheus.Desc
	refused         *prometheus.Desc

	ghostsByOwner *prometheus.Desc
	eventsTotal   *prometheus.Desc
	eventsDropped *prometheus.Desc
}

// Collector returns a prometheus.Collector for the store's metrics. Register
// it once per registry.
func (s *Store) Collector() prometheus.Collector {
	return &collector{
		s:               s,
		ghostSessions:   desc("ghost_sessions", "Ghost sessions in the last scan, by namespace, family and verdict.", "netns", "family", "verdict"),
		suspectSessions: desc("suspect_sessions", "Suspect sockets in the last scan by reason; a socket with two reasons counts under both.", "netns", "reason"),
		sockets:         desc("sockets", "TCP sockets in the last scan, by namespace, family and state.", "netns", "family", "state"),
		oldestGhostAge:  desc("oldest_ghost_age_seconds", "How long the oldest ghost in the namespace has been one; 0 when there is none, absent when the namespace was not scanned.", "netns"),
		probes:          desc("probes_total", "Probe segments sent."),
		probesNAT:       desc("probe_nat_translated_total", "Probe segments sent on connections NATed in their own namespace, whose replies were matched on the conntrack reply tuple."),
		probeReplies:    desc("probe_replies_total", "Replies matched to probes, by kind (ack, rst, icmp).", "kind"),
		probeRejected: desc("probe_replies_rejected_total", "Captured packets of probed connections not taken as replies, by why: "+
			"rst_seq (a RST at none of the sequence numbers the peer must use), ack_seq (an ACK behind the connection), "+
			"icmp_quote (an ICMP error quoting none of our probes), queue_full (a reply a probe had no room for), "+
			"icmp_repeat (an ICMP error beyond one per probe sent), "+
			"bad_checksum (a datagram whose checksum did not verify).", "why"),
		captureDrops:  desc("probe_capture_drops_total", "Datagrams the probes' packet capture lost because its buffer was full (PACKET_STATISTICS)."),
		probeRTT:      s.rttHist.Desc(),
		killed:        desc("ghosts_killed_total", "Connections ended by the kill policy, by namespace and verdict.", "netns", "verdict"),
		killErrors:    desc("kill_errors_total", "Kill actions that failed, by namespace and errno.", "netns", "errno"),
		killSupported: desc("kill_supported", "Whether the configured kill mode works on this host (1) or not (0)."),
		scanDuration:  s.scanHist.Desc(),
		lastScan:      desc("last_scan_timestamp_seconds", "Unix time of the last completed scan."),
		netnsSuccess:  desc("netns_scan_success", "Whether the last dump of the namespace succeeded.", "netns"),
		netnsDuration: desc("netns_scan_duration_seconds", "Duration of the last dump of the namespace.", "netns"),
		netnsInfo:     desc("netns_info", "Scanned network namespaces; always 1.", "netns", "netns_inode", "kind"),
		podInfo:       desc("pod_info", "Scanned network namespaces that are a Kubernetes pod's, as the container runtime names them (netns is <k8s_namespace>/<pod>); always 1.", "netns", "k8s_namespace", "pod"),
		buildInfo:     desc("build_info", "The running ghostd build; always 1.", "version", "revision", "goversion"),
		reloadOK:      desc("config_last_reload_successful", "Whether the last configuration load succeeded."),
		reloadTime:    desc("config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration load."),
		probeMode:     desc("probe_mode_info", "How probes choose sequence numbers: in_window, blind or off; always 1.", "mode"),
		capability:    desc("capability", "Whether ghostd holds a capability one of its features needs (1) or runs without it (0).", "capability"),
		nsSkipped:     desc("namespaces_skipped", "Network namespaces the last scan did not dump because of the namespace cap."),
		refused:       desc("suspects_refused_total", "Sockets that needed tracking but were refused by the cap on tracked sockets."),

		ghostsByOwner: desc("ghost_sessions_by_owner", "Ghost sessions in the last scan by owner (pod, else systemd unit, else process name): the top owners by count, the rest under \"other\".", "owner"),
		eventsTotal:   desc("events_total", "Events recorded, by kind: suspect, ghost, alive, killed, gone.", "kind"),
		eventsDropped: desc("events_dropped_total", "Events lost, by where: ring (pushed out of the memory ring by newer ones), file (never written to the events file: queue full or write error).", "where"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.ghostSessions, c.suspectSessions, c.sockets, c.oldestGhostAge,
		c.probes, c.probesNAT, c.probeReplies, c.probeRejected, c.captureDrops, c.probeRTT, c.killed, c.killErrors, c.killSupported,
		c.scanDuration, c.lastScan, c.netnsSuccess, c.netnsDuration, c.netnsInfo, c.podInfo,
		c.buildInfo, c.reloadOK, c.reloadTime, c.probeMode, c.capability,
		c.nsSkipped, c.refused, pathIdleDesc,
		c.nsSkipped, c.refused, c.ghostsByOwner, c.eventsTotal, c.eventsDropped,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.RLock()
	defer s.mu.RUnlock()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- constMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- constMetric(d, prometheus.CounterValue, v, labels...)
	}

	gauge(c.buildInfo, 1, s.build.Version, s.build.Revision, s.build.GoVersion)
	counter(c.probes, float64(s.probes))
	counter(c.probesNAT, float64(s.natProbes))
	for _, kind := range sortedKeys(s.replies) {
		counter(c.probeReplies, float64(s.replies[kind]), kind)
	}
	for _, why := range sortedKeys(s.rejected) {
		counter(c.probeRejected, float64(s.rejected[why]), why)
	}
	counter(c.captureDrops, float64(s.capDrops))
	ch <- s.rttHist
	ch <- s.scanHist
	for k, v := range s.killed {
		counter(c.killed, float64(v), k.netns, k.verdict)
	}
	for k, v := range s.killErrs {
		counter(c.killErrors, float64(v), k.netns, k.errno)
	}
	if s.killKnown {
		gauge(c.killSupported, boolFloat(s.killOK))
	}
	for _, name := range sortedKeys(s.caps) {
		gauge(c.capability, boolFloat(s.caps[name]), name)
	}
	if s.reloadSet {
		gauge(c.reloadOK, boolFloat(s.reloadOK))
		var ts float64
		if !s.reloadAt.IsZero() {
			ts = float64(s.reloadAt.UnixNano()) / 1e9
		}
		gauge(c.reloadTime, ts)
	}
	c.collectEvents(ch)

	snap := s.snap
	if snap == nil {
		return
	}
	if snap.ProbeMode != "" {
		gauge(c.probeMode, 1, snap.ProbeMode)
	}
	if !snap.Doc.ScannedAt.IsZero() {
		gauge(c.lastScan, float64(snap.Doc.ScannedAt.UnixNano())/1e9)
	}
	gauge(c.nsSkipped, float64(snap.Limits.NamespacesSkipped))
	counter(c.refused, float64(snap.Limits.SuspectsRefused))
	c.collectNamespaces(ch, snap)
	c.collectSessions(ch, snap)
	collectPaths(ch, snap)
	for owner, n := range TopOwners(snap.ghostsByOwner(), s.ownersTopK) {
		gauge(c.ghostsByOwner, float64(n), owner)
	}
	sockets := map[[3]string]int{}
	for _, sc := range snap.Sockets {
		sockets[[3]string{sc.Netns, sc.Family, sc.State}] += sc.Count
	}
	for k, v := range sockets {
		gauge(c.sockets, float64(v), k[0], k[1], k[2])
	}
}

// collectNamespaces exports the per-namespace scan outcome.
func (c *collector) collectNamespaces(ch chan<- prometheus.Metric, snap *Snapshot) {
	seen := map[string]bool{}
	for i := range snap.Doc.Namespaces {
		n := &snap.Doc.Namespaces[i]
		if seen[n.Netns] {
			continue // names are unique per scan; never emit a duplicate series
		}
		seen[n.Netns] = true
		ch <- constMetric(c.netnsSuccess, prometheus.GaugeValue, boolFloat(n.OK()), n.Netns)
		ch <- constMetric(c.netnsDuration, prometheus.GaugeValue, n.Duration.Seconds(), n.Netns)
		ch <- constMetric(c.netnsInfo, prometheus.GaugeValue, 1, n.Netns, strconv.FormatUint(n.NetnsInode, 10), n.Kind)
		if n.Pod != "" {
			ch <- constMetric(c.podInfo, prometheus.GaugeValue, 1, n.Netns, n.K8sNamespace, n.Pod)
		}
	}
}

// collectSessions exports the session gauges. Every scanned namespace gets an
// oldest-ghost-age series (0 without ghosts), so absence means "not scanned".
func (c *collector) collectSessions(ch chan<- prometheus.Metric, snap *Snapshot) {
	ghosts := map[[3]string]int{}
	suspects := map[[2]string]int{}
	oldest := map[string]float64{}
	// Zero series for every scanned namespace, so sums and absent() behave.
	for ns := range scannedNames(snap) {
		oldest[ns] = 0
		for _, fam := range []string{"inet", "inet6"} {
			for _, v := range ghostVerdicts {
				ghosts[[3]string{ns, fam, string(v)}] = 0
			}
		}
		for _, r := range tracker.AllReasons {
			suspects[[2]string{ns, r.String()}] = 0
		}
	}
	for _, sum := range snap.summary() {
		if sum.GhostCount() > 0 {
			oldest[sum.Netns] = max(oldest[sum.Netns], sum.OldestGhostSeconds)
		}
		for r, n := range sum.Suspects {
			suspects[[2]string{sum.Netns, r.String()}] += n
		}
		for k, n := range sum.Ghosts {
			ghosts[[3]string{sum.Netns, k.Family, k.Verdict}] += n
		}
	}
	for k, v := range ghosts {
		ch <- constMetric(c.ghostSessions, prometheus.GaugeValue, float64(v), k[0], k[1], k[2])
	}
	for k, v := range suspects {
		ch <- constMetric(c.suspectSessions, prometheus.GaugeValue, float64(v), k[0], k[1])
	}
	for ns, v := range oldest {
		ch <- constMetric(c.oldestGhostAge, prometheus.GaugeValue, v, ns)
	}
}

var ghostVerdicts = probe.GhostVerdicts()

// scannedNames returns the namespaces the snapshot scanned successfully.
func scannedNames(snap *Snapshot) map[string]bool {
	m := make(map[string]bool, len(snap.Doc.Namespaces))
	for _, n := range snap.Doc.Namespaces {
		if n.Error != "" {
			m[n.Netns] = false
		} else if _, ok := m[n.Netns]; !ok {
			m[n.Netns] = true
		}
	}
	for k, ok := range m {
		if !ok {
			delete(m, k)
		}
	}
	return m
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
