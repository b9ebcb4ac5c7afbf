// Command ghostd finds, proves, reports and (where allowed) kills ghost TCP sessions.
package main

import (
	"os"

	"github.com/ghostd/ghostd/internal/app"
)

// Set at build time with -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = ""
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr, app.Build{Version: version, Revision: revision}))
}
