package app

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/internal/engine"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
)

// ExitGhost is `ghostd probe`'s exit code when the verdict is a confirmed
// ghost, so scripts can branch on it; alive, and a verdict that is not
// confirmed (blind silence, uncertain), exit 0.
const ExitGhost = 3

// probeExit is `ghostd probe`'s exit code for a probe's result: a script
// that ends connections on ExitGhost must not end one whose verdict the
// daemon itself would never call a ghost.
func probeExit(r probe.Result) int {
	if r.Verdict.Ghost() && r.Confirmed {
		return ExitGhost
	}
	return ExitOK
}

// runProbe implements `ghostd probe [--netns NS] LOCAL REMOTE`. It probes only
// a 4-tuple that is in the socket table right now.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	// The connection's namespace, its probing, and the runtime that names
	// pods for --netns NAMESPACE/POD: the keys' own flags, as run and scan take them.
	f := config.RegisterFlagsFor(fs, "netns", "probes", "probe-interval", "runtime-endpoint")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if code, ok := parseFlags(fs, args, stderr, false); !ok {
		return code
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(stderr, "ghostd probe: need LOCAL and REMOTE, e.g. ghostd probe 192.0.2.1:5432 198.51.100.7:40112")
		return ExitUsage
	}
	local, err1 := netip.ParseAddrPort(fs.Arg(0))
	remote, err2 := netip.ParseAddrPort(fs.Arg(1))
	if err1 != nil || err2 != nil {
		fmt.Fprintf(stderr, "ghostd probe: LOCAL and REMOTE must be ADDR:PORT ([ADDR]:PORT for IPv6): %q %q\n", fs.Arg(0), fs.Arg(1))
		return ExitUsage
	}
	cfg := config.Default()
	if err := f.Apply(&cfg); err != nil {
		fmt.Fprintf(stderr, "ghostd probe: %v\n", err)
		return ExitUsage
	}
	log := newLogger(stderr, cfg.Log)
	sel, err := inventory.SelectNetns(cfg.Netns)
	if err != nil {
		fmt.Fprintf(stderr, "ghostd probe: %v\n", err)
		return ExitUsage
	}
	p := &parts{log: log, caps: CurrentCapabilities()}
	opts := inventory.ScannerOptions{Select: sel}
	if pods, err := newPods(cfg, log); err == nil && pods != nil {
		defer pods.Close()
		opts.Name = pods.Name // so that --netns NAMESPACE/POD finds the pod
	}
	p.scanner = inventory.NewScanner(log, opts)
	defer p.scanner.Close()

	var found []probe.Target
	var state inventory.State
	p.scanner.Scan(ctx, inventory.AllStates, func(ns *inventory.Namespace, sk *inventory.Socket) error {
		if SameTuple(sk.Local, local) && SameTuple(sk.Remote, remote) {
			found = append(found, probe.Target{
				NetnsInode: ns.Inode, NetnsPath: ns.Path, Cookie: sk.Cookie, Family: sk.Family,
				Local: sk.Local, Remote: sk.Remote, KernelEvidence: engine.KernelEvidence(sk), RTO: engine.RTO(sk),
			})
			state = sk.State
		}
		return nil
	})
	switch {
	case len(found) == 0:
		fmt.Fprintf(stderr, "ghostd probe: %s -> %s is not in the socket table of netns %s: refusing to probe\n", local, remote, cfg.Netns)
		return ExitFailure
	case len(found) > 1:
		fmt.Fprintf(stderr, "ghostd probe: %s -> %s exists in %d namespaces: choose one with --netns\n", local, remote, len(found))
		return ExitUsage
	case state != inventory.StateEstablished && state != inventory.StateCloseWait && state != inventory.StateFinWait1 && state != inventory.StateFinWait2:
		fmt.Fprintf(stderr, "ghostd probe: %s -> %s is %s: only synchronized connections can be probed\n", local, remote, state)
		return ExitFailure
	}
	p.prober = p.newProber(cfg)
	defer p.prober.Close()
	if p.seq != nil {
		defer p.seq.Close()
	}
	r, err := p.prober.Probe(ctx, found[0])
	if err == nil && r.Unprobeable != "" && !*asJSON {
		fmt.Fprintf(stdout, "%s -> %s: unprobed (%s): the peer drops segments without the socket's signature\n",
			engine.FormatAddr(found[0].Local), engine.FormatAddr(found[0].Remote), strings.ReplaceAll(r.Unprobeable, "_", "-"))
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ghostd probe: %v\n", err)
		return ExitFailure
	}
	if *asJSON {
		out := map[string]any{
			"local": engine.FormatAddr(found[0].Local), "remote": engine.FormatAddr(found[0].Remote),
			"verdict": r.Verdict, "probe_mode": r.Mode, "probes_sent": r.Sent, "replies": r.Replies,
			"rtt_seconds": nil, "confirmed": r.Confirmed, "host_reachable": r.HostReachable, "host_hint": r.HostHint, "closed_by_probe": r.ClosedLocal, "guarded": r.Guarded,
		}
		if r.RTT > 0 {
			out["rtt_seconds"] = r.RTT.Seconds()
		}
		if r.Unprobeable != "" {
			out["unprobeable"] = r.Unprobeable
		}
		if r.NAT != "" {
			out["nat"] = r.NAT
		}
		_ = json.NewEncoder(stdout).Encode(out)
	} else {
		rtt := "-"
		if r.RTT > 0 {
			rtt = r.RTT.String()
		}
		fmt.Fprintf(stdout, "%s -> %s: %s (mode %s, %d/%d replies, rtt %s, confirmed %t)\n",
			engine.FormatAddr(found[0].Local), engine.FormatAddr(found[0].Remote), r.Verdict, r.Mode, r.Replies, r.Sent, rtt, r.Confirmed)
	}
	return probeExit(r)
}

// SameTuple compares a socket address with a user-given one, treating a
// v4-mapped IPv6 address as its IPv4 form.
func SameTuple(sock, want netip.AddrPort) bool {
	return sock.Port() == want.Port() && sock.Addr().Unmap() == want.Addr().Unmap()
}
