//go:build !linux

package exporter

func errnoName(err error) string { return "other" }
