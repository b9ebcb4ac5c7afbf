//go:build !linux

package exporter

import "errors"

func errnoErrorForTest() error { return errors.New("inventory: destroy: no such socket") }
