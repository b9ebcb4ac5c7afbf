// Command ghostd finds, proves, reports and (where allowed) kills ghost TCP sessions.
package main

import (
	"os"
	"runtime/debug"

	"github.com/ghostd/ghostd/internal/app"
)

// Set at build time with -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = ""
)

func main() {
	// ghostd's heap is mostly long-lived tables (per-socket history, the
	// snapshot); collect at 50 % growth instead of 100 % to keep RSS near
	// the live heap at little CPU cost. GOGC in the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr, app.Build{Version: version, Revision: revision}))
}
