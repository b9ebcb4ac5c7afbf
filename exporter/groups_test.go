package exporter

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGroupSessions(t *testing.T) {
	ss := []Session{
		// Two ghosts and a healthy suspect of postgres, reached by clients.
		{Local: "192.0.2.1:5432", Remote: "198.51.100.7:40000", Comm: "postgres", Unit: "postgresql.service", Ghost: true},
		{Local: "192.0.2.1:5432", Remote: "198.51.100.200:40001", Comm: "postgres", Unit: "postgresql.service", Ghost: true},
		{Local: "192.0.2.1:5432", Remote: "198.51.100.9:40002", Comm: "postgres", Unit: "postgresql.service"},
		// An app with no unit dialing out to two /24s on 6379, one killed.
		{Local: "192.0.2.1:41000", Remote: "203.0.113.5:6379", Comm: "worker", Ghost: true},
		{Local: "192.0.2.1:41001", Remote: "203.0.114.5:6379", Comm: "worker", Killed: true},
		// IPv6 and IPv4-mapped peers; both ports ephemeral: the remote one counts.
		{Local: "[2001:db8::1]:50000", Remote: "[2001:db8:0:1:aaaa::2]:50001", Comm: "worker", Ghost: true},
		{Local: "[2001:db8::1]:50000", Remote: "[2001:db8:0:1:bbbb::3]:50001"},
		{Local: "[::ffff:192.0.2.1]:8080", Remote: "[::ffff:203.0.113.77]:33000"},
	}
	owners := []Group{
		{Owner: "postgresql.service", Ghosts: 2, Suspects: 3},
		{Owner: "worker", Ghosts: 2, Suspects: 2, Killed: 1},
		{Owner: "unknown", Suspects: 2},
	}
	if diff := cmp.Diff(owners, GroupSessions(ss, ByOwner)); diff != "" {
		t.Errorf("by owner (-want +got):\n%s", diff)
	}
	dests := []Group{
		{Destination: "198.51.100.0/24", Port: 5432, PortSide: PortLocal, Ghosts: 2, Suspects: 3},
		{Destination: "2001:db8:0:1::/64", Port: 50001, PortSide: PortRemote, Ghosts: 1, Suspects: 2},
		{Destination: "203.0.113.0/24", Port: 6379, PortSide: PortRemote, Ghosts: 1, Suspects: 1},
		{Destination: "203.0.113.0/24", Port: 8080, PortSide: PortLocal, Suspects: 1},
		{Destination: "203.0.114.0/24", Port: 6379, PortSide: PortRemote, Killed: 1},
	}
	if diff := cmp.Diff(dests, GroupSessions(ss, ByDestination)); diff != "" {
		t.Errorf("by destination (-want +got):\n%s", diff)
	}
	if got := GroupSessions([]Session{{Remote: "not an address"}}, ByDestination); len(got) != 0 {
		t.Errorf("an unparsable remote made a group: %+v", got)
	}
}

func TestTopOwners(t *testing.T) {
	ghosts := map[string]int{"a.service": 5, "b.service": 3, "c": 3, "d": 1, "other": 2, "idle": 0}
	tests := []struct {
		k    int
		want map[string]int
	}{
		{1, map[string]int{"a.service": 5, "other": 9}},
		// Ties go by name; a real owner named "other" adds to the bucket.
		{3, map[string]int{"a.service": 5, "b.service": 3, "c": 3, "other": 3}},
		{20, map[string]int{"a.service": 5, "b.service": 3, "c": 3, "d": 1, "other": 2}},
	}
	for _, tt := range tests {
		got := TopOwners(ghosts, tt.k)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("k=%d (-want +got):\n%s", tt.k, diff)
		}
		if len(got) > tt.k+1 {
			t.Errorf("k=%d: %d series", tt.k, len(got))
		}
	}
	if got := TopOwners(nil, 5); len(got) != 0 {
		t.Errorf("no ghosts: %v", got)
	}
}
