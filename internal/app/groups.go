package app

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/ghostd/ghostd/exporter"
)

// writeGroups prints `ghostd scan --by`: the document's sessions grouped by
// owner or destination, as a table or (asJSON) as /api/v1/groups does.
func writeGroups(stdout, stderr io.Writer, doc *exporter.Document, by exporter.GroupBy, asJSON bool, mode string) int {
	groups := exporter.GroupSessions(doc.Sessions, by)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(exporter.GroupsDocument{ScannedAt: doc.ScannedAt, By: by, Groups: groups}); err != nil {
			fmt.Fprintf(stderr, "ghostd scan: %v\n", err)
			return ExitFailure
		}
		return ExitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if by == exporter.ByDestination {
		fmt.Fprintln(tw, "DESTINATION\tPORT\tGHOSTS\tSUSPECTS\tKILLED")
	} else {
		fmt.Fprintln(tw, "OWNER\tGHOSTS\tSUSPECTS\tKILLED")
	}
	ghosts := 0
	for _, g := range groups {
		ghosts += g.Ghosts
		if by == exporter.ByDestination {
			port := strconv.Itoa(int(g.Port))
			if g.PortSide == exporter.PortLocal {
				port += " (local)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", g.Destination, port, g.Ghosts, g.Suspects, g.Killed)
			continue
		}
		// Owners are process names other users choose: never raw to a terminal.
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", termSafe(g.Owner), g.Ghosts, g.Suspects, g.Killed)
	}
	tw.Flush()
	sockets := 0
	for _, ns := range doc.Namespaces {
		sockets += ns.Sockets
		if ns.Error != "" {
			fmt.Fprintf(stdout, "netns %s: not scanned: %s\n", termSafe(ns.Netns), termSafe(ns.Error))
		}
	}
	fmt.Fprintf(stdout, "%d groups by %s, %d sessions listed, %d ghosts, %d sockets in %d namespaces, probes %s\n",
		len(groups), by, len(doc.Sessions), ghosts, sockets, len(doc.Namespaces), mode)
	return ExitOK
}
