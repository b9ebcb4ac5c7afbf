//go:build !linux

package exporter

const ownerEnv = "GHOSTD_EX_OWNER"

func runOwner() int { return 1 }
