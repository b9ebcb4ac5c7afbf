package app

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/kill"
)

// runScan implements `ghostd scan`: one pass, probes included unless
// --no-probe, printed as a table or as the JSON contract.
func runScan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	f := config.RegisterFlags(fs, true)
	fs.StringVar(&f.ConfigFile, "config", config.DefaultPath, "configuration file (a missing default file means defaults)")
	asJSON := fs.Bool("json", false, "print the JSON document instead of a table")
	all := fs.Bool("all", false, "list every socket, not only suspects")
	by := fs.String("by", "", "print the sessions grouped by owner or destination, one row per group")
	if code, ok := parseFlags(fs, args, stderr, true); !ok {
		return code
	}
	if _, ok := exporter.ParseGroupBy(*by); *by != "" && !ok {
		fmt.Fprintf(stderr, "ghostd scan: --by %q: want owner or destination\n", *by)
		return ExitUsage
	}
	cfg, err := loadScanConfig(f)
	if err != nil {
		fmt.Fprintf(stderr, "ghostd scan: %v\n", err)
		return ExitUsage
	}
	log := newLogger(stderr, cfg.Log)
	p, err := newParts(cfg, log, *all, false)
	if err != nil {
		fmt.Fprintf(stderr, "ghostd scan: %v\n", err)
		return ExitUsage
	}
	defer p.Close()
	var killer *kill.Killer
	if cfg.Kill.Enabled {
		killer = p.newKiller(cfg, nil)
	}

	p.engine.Scan(ctx) // the scanner logs a namespace it cannot scan; the table lists it
	var pe probeErrors
	pe.note(log, p.engine.Probe(ctx, p.engine.Targets()))
	snap, cands := p.engine.Snapshot()
	if killer != nil {
		for _, rec := range killer.Apply(ctx, cands) {
			if rec.Skipped == "" && rec.Err == nil {
				p.engine.MarkKilled(rec.Key)
			}
		}
	}
	doc := p.engine.Document()
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "ghostd scan: interrupted")
		return ExitFailure
	}
	if *by != "" {
		return writeGroups(stdout, stderr, &doc, exporter.GroupBy(*by), *asJSON, snap.ProbeMode)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			fmt.Fprintf(stderr, "ghostd scan: %v\n", err)
			return ExitFailure
		}
		return ExitOK
	}
	writeTable(stdout, &doc, snap.ProbeMode)
	return ExitOK
}

// loadScanConfig loads the configuration for `ghostd scan`. A scan is a
// diagnostic: it kills only when --kill is on its own command line, never
// because the daemon's configuration file enables killing.
func loadScanConfig(f *config.Flags) (config.Config, error) {
	cfg, err := loadConfig(f)
	if err != nil {
		return cfg, err
	}
	if !f.Given("kill") {
		cfg.Kill.Enabled = false
	}
	return cfg, nil
}

// writeTable prints the sessions like ss does, then one line per namespace
// that could not be scanned.
func writeTable(w io.Writer, doc *exporter.Document, mode string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NETNS\tSTATE\tLOCAL\tREMOTE\tIDLE\tKERNEL\tREASONS\tVERDICT\tPROBES\tPROCESS")
	ghosts := 0
	for i := range doc.Sessions {
		s := &doc.Sessions[i]
		verdict := s.VerdictText()
		if s.Ghost {
			verdict += " (ghost)"
			ghosts++
		}
		if s.Killed {
			verdict += " killed"
		}
		reasons := strings.Join(s.Reasons, ",")
		if reasons == "" {
			reasons = "-"
		}
		// Names and comms come from other users: never let them reach
		// the terminal raw (escape sequences), nor break the columns.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n",
			termSafe(s.Netns), s.State, s.Local, s.Remote, FormatIdle(s.IdleSeconds), kernelColumn(s), reasons, verdict,
			s.Replies, s.ProbesSent, termSafe(process(s)))
	}
	tw.Flush()
	sockets := 0
	for _, ns := range doc.Namespaces {
		sockets += ns.Sockets
		if ns.Error != "" {
			fmt.Fprintf(w, "netns %s: not scanned: %s\n", termSafe(ns.Netns), termSafe(ns.Error))
		}
	}
	fmt.Fprintf(w, "%d sessions listed, %d ghosts, %d sockets in %d namespaces, probes %s\n",
		len(doc.Sessions), ghosts, sockets, len(doc.Namespaces), mode)
}

// kernelColumn is when the socket's own kernel would notice a dead peer:
// ">1h58m" no earlier than (keepalive), "~15m24s" about (retransmissions),
// "never", or "?" when it cannot be told.
func kernelColumn(s *exporter.Session) string {
	return strings.ReplaceAll(exporter.KernelDeadline(s, func(sec float64) string {
		if sec < 1 {
			return "0s"
		}
		return FormatIdle(sec)
	}), "≥", ">")
}

func process(s *exporter.Session) string {
	var parts []string
	if s.Comm != "" {
		parts = append(parts, fmt.Sprintf("%s[%d]", s.Comm, s.PID))
	}
	if s.Unit != "" {
		parts = append(parts, s.Unit)
	} else if s.Container != "" {
		parts = append(parts, "container:"+s.Container)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// FormatIdle renders seconds compactly: "850ms", "42s", "7m12s", "2h11m".
func FormatIdle(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}
