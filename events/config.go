package events

import (
	"fmt"
	"path/filepath"
)

// Config is how events are kept.
type Config struct {
	// RingSize is how many events the memory ring keeps.
	RingSize int
	// File is the JSONL file events are appended to; "" keeps none.
	File string
	// FileMaxBytes caps one file: a line that would take it past the cap
	// goes into a new file, and the old one is rotated to File.1, File.2…
	FileMaxBytes int64
	// FilesKept is how many files are kept, the one being written
	// included: the disk used is at most FilesKept × FileMaxBytes.
	FilesKept int
}

// Defaults and limits.
const (
	DefaultRingSize     = 10000
	DefaultFileMaxBytes = 10 << 20
	DefaultFilesKept    = 5
	MaxRingSize         = 1000000
	MinFileMaxBytes     = 4096
	MaxFilesKept        = 100
)

// DefaultConfig returns the defaults: a ring of 10 000 events, no file.
func DefaultConfig() Config {
	return Config{RingSize: DefaultRingSize, FileMaxBytes: DefaultFileMaxBytes, FilesKept: DefaultFilesKept}
}

// ConfigError names the setting (file_max_bytes, …) a Validate error is about.
type ConfigError struct {
	Key string // ring_size, file, file_max_bytes or files_kept
	Msg string
}

func (e *ConfigError) Error() string { return "events: " + e.Key + ": " + e.Msg }

// Validate reports the first setting out of range.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.RingSize < 1 || c.RingSize > MaxRingSize:
		return bad("ring_size", "%d: want 1 to %d", c.RingSize, MaxRingSize)
	case c.File != "" && !filepath.IsAbs(c.File):
		return bad("file", "%q: want an absolute path", c.File)
	case c.File != "" && filepath.Clean(c.File) != c.File:
		return bad("file", "path %q is not clean", c.File)
	case c.FileMaxBytes < MinFileMaxBytes:
		return bad("file_max_bytes", "%d: want at least %d", c.FileMaxBytes, MinFileMaxBytes)
	case c.FilesKept < 1 || c.FilesKept > MaxFilesKept:
		return bad("files_kept", "%d: want 1 to %d", c.FilesKept, MaxFilesKept)
	}
	return nil
}
