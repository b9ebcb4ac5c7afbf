package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/internal/engine"
	"github.com/ghostd/ghostd/kill"
	"github.com/ghostd/ghostd/probe"
)

// runScan implements `ghostd scan`: one pass, probes included unless
// --no-probe, printed as a table or as the JSON contract.
func runScan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	f := config.RegisterFlags(fs, true)
	fs.StringVar(&f.ConfigFile, "config", config.DefaultPath, "configuration file (a missing default file means defaults)")
	asJSON := fs.Bool("json", false, "print the JSON document instead of a table")
	all := fs.Bool("all", false, "list every socket, not only suspects (naming the processes of suspects only, see --processes)")
	processes := fs.Bool("processes", false, "with --all, name every listed socket's process, not only the suspects' (reads every socket fd on the host)")
	by := fs.String("by", "", "print the sessions grouped by owner or destination, one row per group (--by owner implies --processes)")
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
	// Grouping by owner needs every listed socket's owner.
	list := listing{all: *all, processes: *processes || exporter.GroupBy(*by) == exporter.ByOwner}
	p, err := newParts(cfg, log, list, false)
	if err != nil {
		fmt.Fprintf(stderr, "ghostd scan: %v\n", err)
		return ExitUsage
	}
	defer p.Close()
	var killer *kill.Killer
	if cfg.Kill.Enabled {
		killer = p.newKiller(cfg, nil)
	}

	var pe probeErrors
	pl := engine.NewPipeline(p.engine, engine.PipelineOptions{
		Kill:    killFunc(killer, p.engine),
		Observe: func(results []probe.Result) { pe.note(log, results) },
	})
	// The scanner logs a namespace it cannot scan; the table lists it.
	pl.Probe(ctx, pl.Scan(ctx))
	snap := pl.Publish(ctx)
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "ghostd scan: interrupted")
		return ExitFailure
	}
	// Stream the sessions, a batch at a time, as of one moment: 200 000
	// sockets (scan --all) are never held as one list of sessions, nor the
	// output as one buffer.
	at := time.Now()
	sessions := func(fn func([]exporter.Session) bool) { p.engine.EachSessionAt(at, fn) }
	if *by != "" {
		return writeGroups(stdout, stderr, &snap.Doc, sessions, exporter.GroupBy(*by), *asJSON, snap.ProbeMode)
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	if *asJSON {
		err = writeJSON(out, &snap.Doc, sessions)
	} else {
		err = writeTableStream(out, snap.Doc.Namespaces, sessions, snap.ProbeMode)
	}
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "ghostd scan: %v\n", err)
		return ExitFailure
	}
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

// eachSessions lists sessions a batch at a time until fn returns false;
// every call lists the same sessions.
type eachSessions func(fn func([]exporter.Session) bool)

// writeJSON writes doc, its sessions listed by each, exactly as a
// json.Encoder indented by two spaces writes the whole Document, but a
// session at a time.
func writeJSON(w io.Writer, doc *exporter.Document, each eachSessions) error {
	frame := *doc
	frame.Sessions = []exporter.Session{}
	b, err := json.MarshalIndent(&frame, "", "  ")
	if err != nil {
		return fmt.Errorf("encode document: %w", err)
	}
	head, ok := bytes.CutSuffix(b, []byte(`[]`+"\n}"))
	if !ok || !bytes.HasSuffix(head, []byte(`"sessions": `)) {
		return errors.New("encode document: sessions are not its last field")
	}
	if _, err := w.Write(append(head, '[')); err != nil {
		return err
	}
	n := 0
	var line []byte
	each(func(batch []exporter.Session) bool {
		for i := range batch {
			line = line[:0]
			if n == 0 {
				line = append(line, "\n    "...)
			} else {
				line = append(line, ",\n    "...)
			}
			n++
			if line, err = batch[i].AppendJSON(line, "    ", "  "); err != nil {
				err = fmt.Errorf("encode session: %w", err)
				return false
			}
			if _, err = w.Write(line); err != nil {
				return false
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	tail := "]\n}\n"
	if n > 0 {
		tail = "\n  ]\n}\n"
	}
	_, err = io.WriteString(w, tail)
	return err
}
