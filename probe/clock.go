package probe

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseTimensOffset reads the monotonic clock's offset from
// /proc/self/timens_offsets ("monotonic <sec> <nsec>" lines, Linux 5.6+).
func parseTimensOffset(b []byte) (time.Duration, error) {
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) != 3 || (f[0] != "monotonic" && f[0] != "1") { // 1 = CLOCK_MONOTONIC on old kernels
			continue
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || nsec < 0 || nsec >= 1e9 {
			return 0, fmt.Errorf("time namespace offsets: bad line %q", strings.TrimSpace(line))
		}
		return time.Duration(sec)*time.Second + time.Duration(nsec), nil
	}
	return 0, nil
}
