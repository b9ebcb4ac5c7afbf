// Package kernelhz reads the running kernel's CONFIG_HZ, the jiffies per second that tcp_sock's times count in.
package kernelhz

import "fmt"

// FromTick turns the timeout one jiffy reads back as into HZ: the kernel
// wrote 1e6/HZ µs with integer division, so HZ is the largest value that
// gives the same quotient.
func FromTick(sec, usec int64) (int, error) {
	if sec != 0 || usec <= 0 {
		return 0, fmt.Errorf("kernelhz: one jiffy read back as %ds %dµs", sec, usec)
	}
	hz := 1_000_000 / usec
	if 1_000_000/hz != usec || hz < 10 || hz > 100_000 {
		return 0, fmt.Errorf("kernelhz: one jiffy read back as %dµs", usec)
	}
	return int(hz), nil
}
