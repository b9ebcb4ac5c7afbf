package config

import (
	"errors"
	"flag"
	"fmt"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/exporter"
)

// registerEventFlags registers the event history's flags (`run` only).
func registerEventFlags(fs *flag.FlagSet, over *Config, d Config) {
	fs.IntVar(&over.Events.RingSize, "events.ring-size", d.Events.RingSize, "events kept in memory for /api/v1/events and the page (key events.ring_size)")
	fs.StringVar(&over.Events.File, "events.file", d.Events.File, "append events to this JSONL file; empty keeps none (key events.file)")
	fs.Int64Var(&over.Events.FileMaxBytes, "events.file-max-bytes", d.Events.FileMaxBytes, "start a new events file before one grows past this many bytes (key events.file_max_bytes)")
	fs.IntVar(&over.Events.FilesKept, "events.files-kept", d.Events.FilesKept, "events files kept, the one being written included (key events.files_kept)")
}

// applyEventFlag copies the event flag name, if it is one, from o to c.
func applyEventFlag(name string, c, o *Config) {
	switch name {
	case "events.ring-size":
		c.Events.RingSize = o.Events.RingSize
	case "events.file":
		c.Events.File = o.Events.File
	case "events.file-max-bytes":
		c.Events.FileMaxBytes = o.Events.FileMaxBytes
	case "events.files-kept":
		c.Events.FilesKept = o.Events.FilesKept
	}
}

// validateEvents checks the event history's settings and the per-owner
// metric's cap.
func (c *Config) validateEvents() error {
	var ee *events.ConfigError
	if err := c.Events.Validate(); errors.As(err, &ee) {
		return &Error{Key: "events." + ee.Key, Msg: ee.Msg}
	} else if err != nil {
		return err
	}
	if c.OwnersTopK < 1 || c.OwnersTopK > exporter.MaxOwnersTopK {
		return &Error{Key: "metrics.owners_top_k", Msg: fmt.Sprintf("must be 1 to %d, got %d", exporter.MaxOwnersTopK, c.OwnersTopK)}
	}
	return nil
}
