package probe

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostd/ghostd/internal/testnet"
)

// ctTable fills a fresh namespace's conntrack table with n DNATed TCP
// entries (192.0.2.2:port → 203.0.113.10:80, answered by 198.51.100.2:8080)
// and n/8 untranslated ones, through `conntrack -R`, and returns the
// DNATed connections as their sockets send.
func ctTable(tb testing.TB, n int) (*testnet.NS, []flowKey) {
	tb.Helper()
	if _, err := exec.LookPath("conntrack"); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("conntrack (Debian package conntrack, in TEST_DEBS) is not installed")
		}
		tb.Skip("conntrack (Debian package conntrack) is not installed")
	}
	ns := testnet.NewNS(tb, "ctb")
	var sb strings.Builder
	conns := make([]flowKey, 0, n)
	for i := range n {
		// Source addresses 192.0.2.2..9, ports from 1024: unique tuples.
		src := fmt.Sprintf("192.0.2.%d", 2+i/50000)
		port := 1024 + i%50000
		fmt.Fprintf(&sb, "-I -p tcp -s %s -d 203.0.113.10 --sport %d --dport 80 --state ESTABLISHED --timeout 600 -r 198.51.100.2 -q %s --reply-port-src 8080 --reply-port-dst %d\n", src, port, src, port)
		conns = append(conns, newFlowKey(netip.MustParseAddrPort(fmt.Sprintf("%s:%d", src, port)), netip.MustParseAddrPort("203.0.113.10:80")))
	}
	for i := range n / 8 {
		fmt.Fprintf(&sb, "-I -p tcp -s 192.0.2.200 -d 198.51.100.3 --sport %d --dport 443 --state ESTABLISHED --timeout 600\n", 1024+i)
	}
	if out, err := ns.ExecErr(sb.String(), "conntrack", "-R", "-"); err != nil {
		tb.Fatalf("conntrack -R: %v: %s", err, out)
	}
	return ns, conns
}

// TestNATLookupDumpMatchesGet: with many targets the lookup reads the whole
// table once; it must find exactly what one lookup per connection does.
func TestNATLookupDumpMatchesGet(t *testing.T) {
	needRoot(t)
	ns, conns := ctTable(t, 600)
	// One connection without an entry, one untranslated.
	conns = append(conns, newFlowKey(netip.MustParseAddrPort("192.0.2.2:9"), netip.MustParseAddrPort("203.0.113.10:80")))
	conns = append(conns, newFlowKey(netip.MustParseAddrPort("192.0.2.200:1030"), netip.MustParseAddrPort("198.51.100.3:443")))
	no, yes := false, true
	get, err := lookupNATWith(ns.Path, conns, &no)
	if err != nil {
		t.Fatal(err)
	}
	dump, err := lookupNATWith(ns.Path, conns, &yes)
	if err != nil {
		t.Fatal(err)
	}
	translated := 0
	for i := range conns {
		if get[i] != dump[i] {
			t.Errorf("%v: get %+v, dump %+v", conns[i], get[i], dump[i])
		}
		if get[i].translated() {
			translated++
			if want := newFlowKey(conns[i].local, netip.MustParseAddrPort("198.51.100.2:8080")); get[i].key != want || get[i].kind != NATDNAT {
				t.Errorf("%v: %+v, want dnat answered on %v", conns[i], get[i], want)
			}
		}
	}
	if translated != 600 {
		t.Errorf("%d connections translated, want 600", translated)
	}
}

// BenchmarkNATLookup compares one lookup per target with one dump of the
// namespace's table, at several target counts (the table holds the targets'
// entries plus 1/8 unrelated ones). It chose natDump's rule.
func BenchmarkNATLookup(b *testing.B) {
	needRoot(b)
	ns, conns := ctTable(b, 32768)
	for _, n := range []int{16, 512, 2048, 8192, 32768} {
		for _, mode := range []string{"get", "dump"} {
			b.Run(fmt.Sprintf("%s/targets=%d", mode, n), func(b *testing.B) {
				var before, after unix.Rusage
				_ = unix.Getrusage(unix.RUSAGE_SELF, &before)
				for b.Loop() {
					dump := mode == "dump"
					out, err := lookupNATWith(ns.Path, conns[:n], &dump)
					if err != nil || !out[n-1].translated() {
						b.Fatalf("%v %+v", err, out[n-1])
					}
				}
				_ = unix.Getrusage(unix.RUSAGE_SELF, &after)
				// CPU time (user + system, the kernel's side of the
				// dump included) says more than wall time on a busy host.
				cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

func TestNATDumpRule(t *testing.T) {
	for _, tt := range []struct {
		conns, entries int
		want           bool
	}{
		{16, 20, false}, // few targets: lookups are cheap
		{natDumpMin, 2 * natDumpMin, true},
		{2048, 36864, false}, // a big table, few of its entries wanted
		{32768, 36864, true}, // most of the table wanted
		{32768, -1, false},   // unknown table size: never a blind dump
	} {
		if got := natDump(tt.conns, tt.entries); got != tt.want {
			t.Errorf("natDump(%d, %d) = %v, want %v", tt.conns, tt.entries, got, tt.want)
		}
	}
}

// TestNATLookupEmptyTable: a namespace that tracks nothing is not asked.
func TestNATLookupEmptyTable(t *testing.T) {
	needRoot(t)
	ns := testnet.NewNS(t, "cte")
	if got := ns.ReadSysctl(t, "net.netfilter.nf_conntrack_count"); got != "0" {
		t.Skipf("fresh namespace has %s conntrack entries", got)
	}
	conns := []flowKey{newFlowKey(netip.MustParseAddrPort("192.0.2.2:1"), netip.MustParseAddrPort("203.0.113.10:80"))}
	out, err := lookupNAT(ns.Path, conns)
	if err != nil || len(out) != 1 || out[0].translated() {
		t.Errorf("lookupNAT in an empty table: %+v, %v", out, err)
	}
}
