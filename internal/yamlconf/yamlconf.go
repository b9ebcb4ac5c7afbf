package yamlconf

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// KeyError is a bad configuration value. Key is its dotted path relative to
// the value being decoded or validated ("keepalive.idle",
// "allow[0].cidrs[1]"); the caller that knows the enclosing section puts it
// under that section with Under. Line is where the value is in the YAML
// document, 0 when unknown (Validate errors carry none).
type KeyError struct {
	Key  string
	Line int
	Msg  string
}

func (e *KeyError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Errorf returns a *KeyError for key.
func Errorf(key, format string, args ...any) error {
	return &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Under returns err with its key placed under parent: "allow[0]" and
// "cidrs[1]" make "allow[0].cidrs[1]". An error that is not a *KeyError
// becomes one keyed by parent.
func Under(parent string, err error) error {
	if err == nil {
		return nil
	}
	var ke *KeyError
	if !errors.As(err, &ke) {
		return &KeyError{Key: parent, Msg: err.Error()}
	}
	return &KeyError{Key: join(parent, ke.Key), Line: ke.Line, Msg: ke.Msg}
}

// join joins two key paths: join("kill", "allow[0]") is "kill.allow[0]",
// join("allow", "[0]") is "allow[0]".
func join(parent, key string) string {
	switch {
	case parent == "":
		return key
	case key == "":
		return parent
	case strings.HasPrefix(key, "["):
		return parent + key
	}
	return parent + "." + key
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// Decode decodes the YAML node n onto the value v points to, so that keys
// the document leaves out keep the values v already holds (its defaults).
// Structs are decoded key by key through their yaml tags: an unknown key,
// or a field tagged "-", is an error. A key whose value is empty ("probe:")
// keeps a struct's values and empties a list. A list given replaces the
// whole list. Durations are Go durations ("90s"); a bare number is not one.
// A type with its own UnmarshalYAML decodes itself, and its *KeyError
// errors are put under the key it was decoded for. Every error is a
// *KeyError naming the key and the line.
func Decode(n *yaml.Node, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("yamlconf: Decode needs a non-nil pointer, got %T", v)
	}
	return decode(n, rv.Elem(), "")
}

func decode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == 0 {
		return nil // an empty document
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	null := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if null {
			return nil // the section keeps its values
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			return at(Under(path, err), n.Line)
		}
		return nil
	}
	switch {
	case null && v.Kind() == reflect.Struct:
		return nil
	case null:
		v.Set(reflect.Zero(v.Type()))
		return nil
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return &KeyError{Key: path, Line: n.Line, Msg: "want a mapping, got " + describe(n)}
		}
		seen := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if line, dup := seen[k.Value]; dup {
				return &KeyError{Key: path, Line: k.Line, Msg: fmt.Sprintf("mapping key %q already defined at line %d", k.Value, line)}
			}
			seen[k.Value] = k.Line
			p := join(path, k.Value)
			f, ok := field(v, k.Value)
			if !ok {
				return &KeyError{Key: p, Line: k.Line, Msg: "unknown key"}
			}
			if err := decode(val, f, p); err != nil {
				return err
			}
		}
		return nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8:
		if n.Kind != yaml.SequenceNode {
			return &KeyError{Key: path, Line: n.Line, Msg: "want a list of " + plural(v.Type().Elem()) + ", got " + describe(n)}
		}
		if len(n.Content) == 0 {
			v.Set(reflect.Zero(v.Type())) // "[]" is an empty list, as nil is
			return nil
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case v.Type() == durationType:
		d, err := time.ParseDuration(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			return &KeyError{Key: path, Line: n.Line, Msg: fmt.Sprintf("invalid duration %s", describe(n))}
		}
		v.SetInt(int64(d))
		return nil
	}
	p := reflect.New(v.Type())
	if n.Kind != yaml.ScalarNode || n.Decode(p.Interface()) != nil {
		return &KeyError{Key: path, Line: n.Line, Msg: "want " + kindName(v.Type()) + ", got " + describe(n)}
	}
	v.Set(p.Elem())
	return nil
}

// at sets the line of a *KeyError that has none.
func at(err error, line int) error {
	var ke *KeyError
	if errors.As(err, &ke) && ke.Line == 0 {
		ke.Line = line
	}
	return err
}

// field returns the field of struct v tagged with name; fields tagged "-"
// are not keys.
func field(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if k := tag(t.Field(i)); k != "" && k == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// tag returns the YAML key of a struct field: its yaml tag's name, or ""
// for an unexported field or one tagged "-" or untagged (not a key).
func tag(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	return name
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func kindName(t reflect.Type) string {
	if t == durationType {
		return "a duration"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func plural(t reflect.Type) string {
	s := kindName(t)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "an "), "a ")
	if s == "true or false" {
		return "booleans"
	}
	return s + "s"
}

// Lines returns the line of every key and list item in the document n, by
// key path ("kill.allow[0].cidrs[1]"), so that an error found after
// decoding (by Validate) can still name its line. Keys inside an alias's
// value are left out (LineOf then names the alias's line).
func Lines(n *yaml.Node) map[string]int {
	lines := map[string]int{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		// An alias is not followed: its value was written elsewhere, and
		// following aliases of aliases costs exponential time.
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := join(path, n.Content[i].Value)
				if _, ok := lines[p]; !ok {
					lines[p] = n.Content[i].Line
				}
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				lines[p] = c.Line
				walk(c, p)
			}
		}
	}
	walk(n, "")
	return lines
}

// LineOf returns the line of key in lines, or of its nearest parent that
// has one, or 0.
func LineOf(lines map[string]int, key string) int {
	for key != "" {
		if n, ok := lines[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// Keys returns the dotted key of every configuration value in the struct
// type t, in field order: it descends into struct fields and stops at
// anything else (a list of rules is one key).
func Keys(t reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := tag(f)
			if name == "" {
				continue
			}
			p := join(path, name)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType && !isLeaf(f.Type) {
				walk(f.Type, p)
				continue
			}
			out = append(out, p)
		}
	}
	walk(t, "")
	return out
}

// isLeaf reports whether a struct type is one value (it decodes a scalar
// itself) rather than a section of keys: it has no tagged fields.
func isLeaf(t reflect.Type) bool {
	for i := range t.NumField() {
		if tag(t.Field(i)) != "" {
			return false
		}
	}
	return true
}

// Field returns the field of the struct v at the dotted key path (as Keys
// lists them), and false when there is none.
func Field(v reflect.Value, key string) (reflect.Value, bool) {
	for _, name := range strings.Split(key, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		f, ok := field(v, name)
		if !ok {
			return reflect.Value{}, false
		}
		v = f
	}
	return v, true
}
