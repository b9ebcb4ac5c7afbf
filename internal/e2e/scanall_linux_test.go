package e2e

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/testnet"
)

// TestScanAllNamesSuspectsOnly: `ghostd scan --all` lists every socket but
// names the process of suspects only, as `ss` without -p does; with
// --processes (or --by owner) it names every listed socket's process.
func TestScanAllNamesSuspectsOnly(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	idle, _ := idlePair(t, n, "tcp4")
	time.Sleep(2500 * time.Millisecond)          // past --idle 2s
	fresh, freshClient := idlePair(t, n, "tcp4") // kept busy: never a suspect
	stop := make(chan struct{})
	defer close(stop)
	keepBusy(fresh, freshClient, stop)
	pid, comm := os.Getpid(), "e2e.test"
	base := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--no-probe", "--all"}
	for _, processes := range []bool{false, true} {
		args := base
		if processes {
			args = append(args[:len(args):len(args)], "--processes")
		}
		doc, out := scanDoc(t, append(args[:len(args):len(args)], "--json")...)
		found := 0
		for _, s := range doc.Sessions {
			named := processes
			switch sessionKey(&s) {
			case rowKey(idle):
				named = true
				if len(s.Reasons) == 0 {
					t.Errorf("processes=%v: the idle socket is no suspect: %+v", processes, s)
				}
			case rowKey(fresh):
				if len(s.Reasons) != 0 {
					t.Errorf("processes=%v: the fresh socket is a suspect: %v", processes, s.Reasons)
				}
			default:
				continue
			}
			found++
			if got := s.PID == pid && s.Comm == comm; got != named {
				t.Errorf("processes=%v: %s: pid %d comm %q; named %v, want %v (pid %d, %s)", processes, sessionKey(&s), s.PID, s.Comm, got, named, pid, comm)
			}
			if !named && (s.PID != 0 || s.Comm != "" || s.Unit != "") {
				t.Errorf("processes=%v: %s: owner %d %q %q, want none", processes, sessionKey(&s), s.PID, s.Comm, s.Unit)
			}
		}
		if found != 2 {
			t.Errorf("processes=%v: %d of the 2 sockets listed:\n%s", processes, found, out)
		}
		table := scanTable(t, args...)
		proc := comm + "[" + strconv.Itoa(pid) + "]"
		if line := lineWith(table, rowKey(idle)); !strings.HasSuffix(line, proc) {
			t.Errorf("processes=%v: suspect row %q, want it to end with %s", processes, line, proc)
		}
		wantFresh := "-"
		if processes {
			wantFresh = proc
		}
		if line := lineWith(table, rowKey(fresh)); !strings.HasSuffix(line, " "+wantFresh) {
			t.Errorf("processes=%v: fresh row %q, want it to end with %s", processes, line, wantFresh)
		}
	}
	// Grouping by owner names every socket's process: the fresh socket
	// counts under the test's own process, not as unknown.
	out := ghostdOut(t, append(base[:len(base):len(base)], "--by", "owner", "--json")...)
	var gd exporter.GroupsDocument
	if err := json.Unmarshal(out, &gd); err != nil {
		t.Fatalf("--by owner --json: %v\n%s", err, out)
	}
	listed := -1
	for _, g := range gd.Groups {
		if g.Owner == comm {
			listed = g.Suspects
		}
	}
	if listed < 2 {
		t.Errorf("--all --by owner: %d sessions under %s, want the idle and the fresh one at least:\n%s", listed, comm, out)
	}
}
