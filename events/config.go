package events

import (
	"fmt"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf"
)

// Config is how events are kept: the `events:` section of ghostd.yml.
type Config struct {
	// RingSize is how many events the memory ring keeps.
	RingSize int `yaml:"ring_size"`
	// File is the JSONL file events are appended to; "" keeps none.
	File string `yaml:"file"`
	// FileMaxBytes caps one file: a line that would take it past the cap
	// goes into a new file, and the old one is rotated to File.1, File.2…
	FileMaxBytes int64 `yaml:"file_max_bytes"`
	// FilesKept is how many files are kept, the one being written
	// included: the disk used is at most FilesKept × FileMaxBytes.
	FilesKept int `yaml:"files_kept"`
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

// UnmarshalYAML decodes an `events:` section onto c strictly: keys it
// leaves out keep c's values, unknown keys are errors (*yamlconf.KeyError).
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	type plain Config
	return yamlconf.Decode(n, (*plain)(c))
}

// Validate reports the first setting out of range, as a *yamlconf.KeyError
// naming its key.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("events: %w", yamlconf.Errorf(key, format, args...))
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
