package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf"
)

// Error is a configuration error. It names the key (a dotted path such as
// "probe.interval" or "kill.allow[0].cidrs[1]", or a flag such as
// "--probes") and, when the value came from a file, the file and line.
type Error struct {
	File string // "" when the value did not come from a file
	Line int    // 0 when unknown
	Key  string // "" for errors of the whole document
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and parses the file at path. A missing file is fine at
// DefaultPath (the defaults apply) and an error anywhere else.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && path == DefaultPath {
		return Default(), nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse parses a YAML document on top of the defaults and validates the
// result. name is the file name used in error messages. Every error is an
// *Error.
func Parse(data []byte, name string) (Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Config{}, syntaxError(name, err)
	}
	c := Default()
	if err := yamlconf.Decode(&doc, &c); err != nil {
		ce := asError(err)
		ce.File = name
		return Config{}, ce
	}
	if err := c.Validate(); err != nil {
		ce := asError(err)
		ce.File = name
		ce.Line = yamlconf.LineOf(yamlconf.Lines(&doc), ce.Key)
		return Config{}, ce
	}
	return c, nil
}

// asError makes err an *Error: a *yamlconf.KeyError keeps its key and line.
func asError(err error) *Error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	var ke *yamlconf.KeyError
	if errors.As(err, &ke) {
		return &Error{Line: ke.Line, Key: ke.Key, Msg: ke.Msg}
	}
	return &Error{Msg: err.Error()}
}

var yamlLine = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)

func syntaxError(name string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: n, Msg: m[2]}
	}
	return &Error{File: name, Msg: strings.TrimPrefix(msg, "yaml: ")}
}
