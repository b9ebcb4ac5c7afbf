package exporter

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func errnoErrorForTest() error { return fmt.Errorf("inventory: destroy: %w", unix.ENOENT) }
