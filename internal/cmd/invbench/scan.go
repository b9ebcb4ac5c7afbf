//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/ghostd/ghostd/inventory"
)

// scanRunner is what ghostd run does each scan: inventory.Scanner over the
// named namespaces (its listing of /proc and /run/netns included), with
// sock_diag dumps or, with oneWalk, the one BPF walk. The Scanner is made
// and scanned once here: a namespace's first scan is always a dump.
func scanRunner(mode string, names []string, oneWalk bool) (runner, func(), error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	s := inventory.NewScanner(log, inventory.ScannerOptions{
		Select:  func(ns inventory.Namespace) bool { return want[ns.Name] },
		OneWalk: oneWalk,
	})
	if oneWalk && s.Source() != inventory.SourceWalk {
		s.Close()
		return runner{}, nil, fmt.Errorf("%s: the BPF walk did not load (see the log)", mode)
	}
	var bytes uint64
	fn := func(_ *inventory.Namespace, sk *inventory.Socket) error {
		if v, ok := sk.Info.BytesReceived(); ok {
			bytes += v
		}
		return nil
	}
	scan := func() (int, error) {
		total, seen := 0, 0
		var sources []string
		for _, r := range s.Scan(context.Background(), inventory.AllStates, fn) {
			if r.Err != nil {
				return total, fmt.Errorf("netns %s: %w", r.Name, r.Err)
			}
			total += r.Sockets
			seen++
			if oneWalk && r.Source != inventory.SourceWalk {
				sources = append(sources, r.Name+"="+r.Source)
			}
		}
		if seen != len(names) {
			return total, fmt.Errorf("scanned %d namespaces, want %d", seen, len(names))
		}
		if len(sources) > 0 && len(sources) < 5 {
			return total, fmt.Errorf("not from the walk: %s", strings.Join(sources, ", "))
		} else if len(sources) > 0 {
			return total, fmt.Errorf("%d namespaces not from the walk", len(sources))
		}
		return total, nil
	}
	// Prime: each namespace's first scan is a dump (cookies).
	s.Scan(context.Background(), inventory.AllStates, fn)
	return runner{res: &result{mode: mode, netns: len(names)}, run: scan}, func() { s.Close() }, nil
}
