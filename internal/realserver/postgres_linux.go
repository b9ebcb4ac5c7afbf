package realserver

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
)

// pgBin returns the directory of the newest installed PostgreSQL's binaries.
func pgBin(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i]
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("postgres (Debian package postgresql): %v", errMissing)
	}
	t.Skip("postgres (Debian package postgresql) is not installed: run make deps")
	return ""
}

// PostgreSQL initdb's a cluster under t.TempDir() as the postgres user and
// runs postgres in ns, listening on v4 and v6 (trust authentication), with
// its unix socket in the same directory. PostgreSQL turns SO_KEEPALIVE on
// for every TCP client with the kernel's defaults (7200 s), as shipped.
func PostgreSQL(t testing.TB, ns *testnet.NS, v4, v6 netip.Addr) *Server {
	t.Helper()
	bin := pgBin(t)
	psql := Need(t, "psql", "postgresql-client")
	dir := ownedDir(t, "postgres")
	data := filepath.Join(dir, "data")
	argv := asUser("postgres", filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb := exec.Command(argv[0], argv[1:]...)
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("realserver: initdb: %v\n%s", err, out)
	}
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = hba.WriteString("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n")
	hba.Close()
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(PostgreSQLPort)
	s := newServer("postgresql", v4, v6, PostgreSQLPort, pgProto{})
	s.start(t, ns, dir, syscall.SIGINT, asUser("postgres", filepath.Join(bin, "postgres"),
		"-D", data, "-k", dir, "-p", port,
		"-c", "listen_addresses="+v4.String()+","+v6.String(),
		"-c", "shared_buffers=16MB", "-c", "max_connections=60", "-c", "fsync=off")...)
	// postgres listens before it accepts sessions ("the database system is
	// starting up"): wait for a query to succeed.
	for deadline := time.Now().Add(StartTimeout); ; time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command(psql, "-h", dir, "-p", port, "-U", "postgres", "-d", "postgres", "-AtXc", "SELECT 1").CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("realserver: postgresql does not answer within %v: %v: %s", StartTimeout, err, out)
		}
	}
	s.view = func() ([]netip.AddrPort, error) {
		out, err := exec.Command(psql, "-h", dir, "-p", port, "-U", "postgres", "-d", "postgres", "-AtX", "-F", " ", "-c",
			"SELECT host(client_addr), client_port FROM pg_stat_activity WHERE client_port > 0").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("realserver: pg_stat_activity: %w: %s", err, out)
		}
		var peers []netip.AddrPort
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line == "" {
				continue
			}
			f := strings.Fields(line)
			if len(f) != 2 {
				return nil, fmt.Errorf("realserver: pg_stat_activity row %q", line)
			}
			a, err1 := netip.ParseAddr(f[0])
			pt, err2 := strconv.ParseUint(f[1], 10, 16)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("realserver: pg_stat_activity row %q", line)
			}
			peers = append(peers, netip.AddrPortFrom(a.Unmap(), uint16(pt)))
		}
		return peers, nil
	}
	return s
}
