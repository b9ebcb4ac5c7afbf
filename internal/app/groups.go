package app

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/ghostd/ghostd/exporter"
)

// writeGroups prints `ghostd scan --by`: the sessions each lists grouped by
// owner or destination, as a table or (asJSON) as /api/v1/groups does. The
// sessions are counted as they stream; only the groups are held.
func writeGroups(stdout, stderr io.Writer, doc *exporter.Document, each eachSessions, by exporter.GroupBy, asJSON bool, mode string) int {
	g := exporter.NewGrouper(by)
	listed := 0
	each(func(batch []exporter.Session) bool {
		for i := range batch {
			g.Add(&batch[i])
		}
		listed += len(batch)
		return true
	})
	groups := g.Groups()
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
	for _, grp := range groups {
		ghosts += grp.Ghosts
		if by == exporter.ByDestination {
			port := strconv.Itoa(int(grp.Port))
			if grp.PortSide == exporter.PortLocal {
				port += " (local)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", grp.Destination, port, grp.Ghosts, grp.Suspects, grp.Killed)
			continue
		}
		// Owners are process names other users choose: never raw to a terminal.
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", termSafe(grp.Owner), grp.Ghosts, grp.Suspects, grp.Killed)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "ghostd scan: %v\n", err)
		return ExitFailure
	}
	sockets := 0
	for _, ns := range doc.Namespaces {
		sockets += ns.Sockets
		if ns.Error != "" {
			fmt.Fprintf(stdout, "netns %s: not scanned: %s\n", termSafe(ns.Netns), termSafe(ns.Error))
		}
	}
	fmt.Fprintf(stdout, "%d groups by %s, %d sessions listed, %d ghosts, %d sockets in %d namespaces, probes %s\n",
		len(groups), by, listed, ghosts, sockets, len(doc.Namespaces), mode)
	return ExitOK
}
