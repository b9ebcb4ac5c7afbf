// Command ghostd finds, proves, reports and (where allowed) kills ghost TCP sessions.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) > 0 && args[0] == "version" {
		fmt.Println("ghostd", version)
		return 0
	}
	fmt.Fprintln(os.Stderr, "usage: ghostd run|scan|probe|version")
	return 2
}
