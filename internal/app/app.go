package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/config"
)

// Build describes the binary; main fills it from -ldflags.
type Build struct {
	Version  string
	Revision string
}

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // a runtime error
	ExitUsage   = 2 // bad flags, arguments or configuration
)

const usage = `usage: ghostd <command> [flags]

commands:
  run      the daemon: scan every interval, probe suspects, serve /metrics, JSON and HTML
  scan     one pass: inventory, classify, probe suspects, print (a table, or --json)
  probe    probe one connection: ghostd probe [--netns NS] LOCAL REMOTE
  version  print the version

Run 'ghostd <command> -h' for a command's flags.
`

// Main runs ghostd with args (without the program name) and returns the exit code.
func Main(args []string, stdout, stderr io.Writer, b Build) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "ghostd %s (revision %s, %s, %s/%s)\n", b.Version, orDash(b.Revision), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return ExitOK
	case "scan":
		return runScan(ctx, rest, stdout, stderr)
	case "probe":
		return runProbe(ctx, rest, stdout, stderr)
	case "run":
		return runDaemon(ctx, rest, stdout, stderr, b)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "ghostd: unknown command %q\n%s", cmd, usage)
	return ExitUsage
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseFlags parses args into fs and reports usage errors in one line; with
// noArgs, a positional argument is one too.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, noArgs bool) (int, bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintf(stderr, "usage of ghostd %s:\n", fs.Name())
			fs.PrintDefaults()
			return ExitOK, false
		}
		fmt.Fprintf(stderr, "ghostd %s: %v (see 'ghostd %s -h')\n", fs.Name(), err, fs.Name())
		return ExitUsage, false
	}
	if noArgs && fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ghostd %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return ExitUsage, false
	}
	return 0, true
}

// loadConfig reads the file (the default path may be missing) and applies the flags.
func loadConfig(f *config.Flags) (config.Config, error) {
	cfg, err := config.Load(f.ConfigFile)
	if err != nil {
		return cfg, err
	}
	if err := f.Apply(&cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// newLogger builds the slog logger the config asks for. Under journald
// (JOURNAL_STREAM set) it drops timestamps: the journal has its own.
func newLogger(w io.Writer, c config.LogConfig) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// buildInfo converts Build for the exporter.
func buildInfo(b Build) exporter.BuildInfo {
	return exporter.BuildInfo{Version: b.Version, Revision: b.Revision, GoVersion: runtime.Version()}
}
