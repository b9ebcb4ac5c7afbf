package nsthread_test

import (
	"net"
	"testing"

	"github.com/ghostd/ghostd/internal/nsthread"
)

// TestOpenKeepsTheNamespace: a listener Open makes inside the namespace of
// an fd is that namespace's: a dial from inside it reaches the listener on
// its loopback address.
func TestOpenKeepsTheNamespace(t *testing.T) {
	ns, fd := newNSFD(t, "nsf")
	ln, err := nsthread.Open(fd, func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer ln.Close()
	ns.Connect(t, ln) // fails the test unless ns's own loopback has the listener
}
