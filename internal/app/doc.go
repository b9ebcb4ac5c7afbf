// Package app implements ghostd's subcommands (run, scan, probe, version) on top of the inventory, tracker, probe and exporter packages.
package app
