// Command ghostd finds, proves, reports and (where allowed) kills ghost TCP sessions.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"

	"github.com/ghostd/ghostd/internal/app"
)

// Set at build time with -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = ""
)

func main() {
	// ghostd's heap is mostly long-lived tables (per-socket history and
	// verdicts, which the collector need not scan); collect at 25 % growth
	// instead of 100 % to keep RSS near the live heap at little CPU cost.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	// One P, as node_exporter does by default: ghostd's work is syscalls
	// and many short waits, and a second P mostly adds wake-ups between
	// threads (measured: 21 % less CPU during a 200 probes/s pass over
	// 200 000 sockets). Syscalls still run in parallel.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(run())
}

func run() int {
	// GHOSTD_CPUPROFILE=FILE writes a CPU profile of the whole command, for
	// `go tool pprof` (ghostd scan has no web listener to serve one).
	if path := os.Getenv("GHOSTD_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "ghostd: GHOSTD_CPUPROFILE: %v\n", err)
			return app.ExitFailure
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	return app.Main(os.Args[1:], os.Stdout, os.Stderr, app.Build{Version: version, Revision: revision})
}
