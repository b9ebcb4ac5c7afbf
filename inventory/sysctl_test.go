package inventory

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSysctls(t *testing.T) {
	got, err := parseSysctls([4][]byte{[]byte("300\n"), []byte("100\n"), []byte(" 3\n"), []byte("15\n")})
	if err != nil {
		t.Fatal(err)
	}
	want := TCPSysctls{KeepaliveTime: 300 * time.Second, KeepaliveIntvl: 100 * time.Second, KeepaliveProbes: 3, Retries2: 15, Read: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "x", "-1", "99999999999"} {
		_, err := parseSysctls([4][]byte{[]byte("1"), []byte(bad), []byte("1"), []byte("1")})
		if err == nil || !strings.Contains(err.Error(), "net.ipv4.tcp_keepalive_intvl") {
			t.Errorf("value %q: err %v, want one naming tcp_keepalive_intvl", bad, err)
		}
	}
}

func TestTCPSysctlsOrDefaults(t *testing.T) {
	got := TCPSysctls{KeepaliveTime: time.Minute}.OrDefaults()
	want := TCPSysctls{KeepaliveTime: time.Minute, KeepaliveIntvl: 75 * time.Second, KeepaliveProbes: 9, Retries2: 15}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// FuzzParseSysctls: any file contents parse or fail without panicking; what
// parses is non-negative and comes back the same from its own decimal form.
func FuzzParseSysctls(f *testing.F) {
	f.Add([]byte("7200\n"), []byte("75\n"), []byte("9\n"), []byte("15\n"))
	f.Add([]byte(""), []byte("-1"), []byte("x"), []byte("99999999999"))
	f.Fuzz(func(t *testing.T, a, b, c, d []byte) {
		s, err := parseSysctls([4][]byte{a, b, c, d})
		if err != nil {
			return
		}
		if !s.Read || s.KeepaliveTime < 0 || s.KeepaliveIntvl < 0 || s.KeepaliveProbes < 0 || s.Retries2 < 0 {
			t.Fatalf("parsed %+v", s)
		}
		again, err := parseSysctls([4][]byte{
			[]byte(strconv.Itoa(int(s.KeepaliveTime / time.Second))), []byte(strconv.Itoa(int(s.KeepaliveIntvl / time.Second))),
			[]byte(strconv.Itoa(s.KeepaliveProbes)), []byte(strconv.Itoa(s.Retries2)),
		})
		if err != nil || again != s {
			t.Fatalf("round trip: %+v -> %+v, %v", s, again, err)
		}
	})
}
