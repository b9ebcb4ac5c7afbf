package inventory

import (
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
