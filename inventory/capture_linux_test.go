//go:build linux

package inventory

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var capture = flag.Bool("capture", false, "capture sock_diag dumps from the real kernel into testdata/ (root)")

// captureTransport records every datagram a Conn receives.
type captureTransport struct {
	transport
	got []byte
}

func (c *captureTransport) recv(b []byte, wait bool, deadline time.Time) (int, error) {
	n, err := c.transport.recv(b, wait, deadline)
	if err == nil && n <= len(b) {
		c.got = append(c.got, b[:n]...)
	}
	return n, err
}

// TestCapture writes the dumps under testdata/ that the golden tests parse.
// Run it as root with: go test -run TestCapture -capture ./inventory
func TestCapture(t *testing.T) {
	if !*capture {
		t.Skip("run with -capture to refresh testdata/ from the real kernel")
	}
	ns, nsf := testNetns(t)
	ln4 := ns.Listen(t, "tcp4", "127.0.0.1:0").(*net.TCPListener)
	ln6 := ns.Listen(t, "tcp6", "[::1]:0").(*net.TCPListener)
	lnDual := ns.Listen(t, "tcp", "[::]:0").(*net.TCPListener)
	p4 := nsPair(t, ns, ln4, "tcp4", ln4.Addr().String())
	p6 := nsPair(t, ns, ln6, "tcp6", ln6.Addr().String())
	pm := nsPair(t, ns, lnDual, "tcp4", "127.0.0.1:"+portOf(lnDual))
	ptw := nsPair(t, ns, ln4, "tcp4", ln4.Addr().String())
	// Some traffic, so byte counters are not zero.
	for _, p := range []pair{p4, p6, pm} {
		p.client.Write([]byte("hello"))
		io.ReadFull(p.server, make([]byte, 5))
	}
	// TIME_WAIT: the client closes first, then the server.
	ptw.client.Close()
	ptw.server.Close()
	time.Sleep(100 * time.Millisecond)

	c, err := Dial(int(nsf.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ct := &captureTransport{transport: c.t}
	c.t = ct
	for _, fam := range []uint8{FamilyInet, FamilyInet6} {
		ct.got = nil
		var req [diagReqLen]byte
		encodeReq(req[:], fam, extInfo, AllStates, nil)
		if _, err := c.dump(0, sockDiagByFamily, req[:], func(*Socket) error { return nil }); err != nil {
			t.Fatal(err)
		}
		name := "dump-" + familyName(fam) + ".bin"
		if err := os.WriteFile(filepath.Join("testdata", name), ct.got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote testdata/%s: %d bytes", name, len(ct.got))
		if fam == FamilyInet {
			// Older kernels' tcp_info, made from this real one (see testdata/README.md).
			for _, n := range []int{192, 232} {
				name := fmt.Sprintf("dump-inet-info%d.bin", n)
				if err := os.WriteFile(filepath.Join("testdata", name), truncateInfo(ct.got, n), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// Both families in one walk (TCPDIAG_GETSOCK), as Dump asks for them.
	ct.got = nil
	var req [compatReqLen]byte
	encodeCompatReq(req[:], extInfo, AllStates)
	if _, err := c.dump(0, tcpdiagGetSock, req[:], func(*Socket) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "dump-compat.bin"), ct.got, 0o644); err != nil {
		t.Fatal(err)
	}
}

func portOf(ln *net.TCPListener) string {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}
