package kernelhz

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestHZMatchesKernelConfig compares HZ with CONFIG_HZ from the kernel's
// config (/proc/config.gz or /boot/config-*), where one is readable.
func TestHZMatchesKernelConfig(t *testing.T) {
	hz, err := HZ()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel HZ %d", hz)
	if want := kconfigHZ(); want != 0 && hz != want {
		t.Errorf("HZ %d, kernel config says CONFIG_HZ=%d", hz, want)
	}
}

// kconfigHZ returns CONFIG_HZ from the kernel's config, or 0 when there is
// none to read.
func kconfigHZ() int {
	out, err := exec.Command("sh", "-c", "zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null").Output()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "CONFIG_HZ="); ok {
			hz, _ := strconv.Atoi(v)
			return hz
		}
	}
	return 0
}
