package yamlconf

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

type inner struct {
	Count int           `yaml:"count"`
	Wait  time.Duration `yaml:"wait"`
}

// upper decodes itself: a scalar, upper-cased; "bad" is an error.
type upper struct{ s string }

func (u *upper) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "bad" {
		return errors.New("bad value")
	}
	u.s = "U:" + n.Value
	return nil
}

type section struct {
	Name string `yaml:"name"`
	Deep inner  `yaml:"deep"`
}

func (s *section) UnmarshalYAML(n *yaml.Node) error {
	type plain section
	return Decode(n, (*plain)(s))
}

type doc struct {
	On      bool      `yaml:"on"`
	Rate    float64   `yaml:"rate"`
	List    []string  `yaml:"list"`
	Items   []inner   `yaml:"items"`
	Tags    []upper   `yaml:"tags"`
	Section section   `yaml:"section"`
	Hidden  int       `yaml:"-"`
	Untaged int       // not a key
	Nested  inner     `yaml:"nested"`
	Leaf    upper     `yaml:"leaf"`
	Stamps  []float64 `yaml:"stamps"`
}

func defaults() doc {
	return doc{Rate: 1, List: []string{"a"}, Section: section{Name: "s", Deep: inner{Count: 2}}, Hidden: 7, Nested: inner{Wait: time.Second}}
}

func decodeString(s string) (doc, error) {
	d := defaults()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		return d, err
	}
	return d, Decode(&n, &d)
}

func TestDecode(t *testing.T) {
	got, err := decodeString("on: true\nlist: [x, y]\nitems:\n  - count: 3\n  - wait: 2s\ntags: [p, q]\nsection:\n  deep:\n    wait: 1m\nleaf: z\n")
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.On, want.List = true, []string{"x", "y"}
	want.Items = []inner{{Count: 3}, {Wait: 2 * time.Second}}
	want.Tags = []upper{{"U:p"}, {"U:q"}}
	want.Section.Deep.Wait = time.Minute // section.name and deep.count keep their values
	want.Leaf = upper{"U:z"}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(doc{}, upper{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for in, check := range map[string]func(doc) bool{
		"":                    func(d doc) bool { return reflect.DeepEqual(d, defaults()) },
		"section:\n":          func(d doc) bool { return d.Section == defaults().Section },
		"list:\n":             func(d doc) bool { return d.List == nil },
		"list: []\n":          func(d doc) bool { return d.List == nil },
		"a: &x 3\nrate: *x\n": nil, // unknown key a
		"nested: &n {count: 4}\nsection:\n  deep: *n\n": func(d doc) bool { return d.Section.Deep.Count == 4 && d.Nested.Count == 4 },
	} {
		d, err := decodeString(in)
		if check == nil {
			if err == nil {
				t.Errorf("%q: no error", in)
			}
			continue
		}
		if err != nil || !check(d) {
			t.Errorf("%q: %+v, %v", in, d, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for in, want := range map[string]string{
		"nope: 1\n":                        "1: nope: unknown key",
		"hidden: 1\n":                      "1: hidden: unknown key",
		"untaged: 1\n":                     "1: untaged: unknown key",
		"on: maybe\n":                      `1: on: want true or false, got "maybe"`,
		"rate: [1]\n":                      "1: rate: want a number, got a list",
		"list: x\n":                        `1: list: want a list of strings, got "x"`,
		"stamps: [1, x]\n":                 `1: stamps[1]: want a number, got "x"`,
		"items:\n  - count: 1\n  - 5\n":    `3: items[1]: want a mapping, got "5"`,
		"items:\n  - wait: 10\n":           `2: items[0].wait: invalid duration "10"`,
		"nested:\n  wait: [1s]\n":          "2: nested.wait: invalid duration a list",
		"tags: [ok, bad]\n":                "1: tags[1]: bad value",
		"section:\n  deep:\n    nope: 1\n": "3: section.deep.nope: unknown key",
		"section: x\n":                     `1: section: want a mapping, got "x"`,
		"rate: 1\non: true\nrate: 2\n":     `3: mapping key "rate" already defined at line 1`,
		"section:\n  name: a\n  name: b\n": `3: section: mapping key "name" already defined at line 2`,
		"- 1\n":                            "1: want a mapping, got a list",
	} {
		_, err := decodeString(in)
		var ke *KeyError
		if !errors.As(err, &ke) {
			t.Errorf("%q: %v is not a *KeyError", in, err)
			continue
		}
		if got := strconv.Itoa(ke.Line) + ": " + ke.Error(); got != want {
			t.Errorf("%q:\n got: %s\nwant: %s", in, got, want)
		}
	}
	if err := Decode(&yaml.Node{}, doc{}); err == nil {
		t.Error("Decode into a non-pointer succeeded")
	}
}

func TestLines(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("a: 1\nb:\n  c: [x,\n    y]\n  d:\n    - e: 1\nf: &r {g: 1}\nh: *r\n"), &n); err != nil {
		t.Fatal(err)
	}
	lines := Lines(&n)
	want := map[string]int{"a": 1, "b": 2, "b.c": 3, "b.c[0]": 3, "b.c[1]": 4, "b.d": 5, "b.d[0]": 6, "b.d[0].e": 6, "f": 7, "f.g": 7, "h": 8}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for key, want := range map[string]int{"b.d[0].e": 6, "b.c[7]": 3, "h.g": 8, "z.y": 0, "": 0} {
		if got := LineOf(lines, key); got != want {
			t.Errorf("LineOf(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestKeysAndField(t *testing.T) {
	want := []string{"on", "rate", "list", "items", "tags", "section.name", "section.deep.count", "section.deep.wait", "nested.count", "nested.wait", "leaf", "stamps"}
	if diff := cmp.Diff(want, Keys(reflect.TypeFor[doc]())); diff != "" {
		t.Errorf("Keys (-want +got):\n%s", diff)
	}
	d := defaults()
	v := reflect.ValueOf(&d).Elem()
	for _, k := range want {
		if _, ok := Field(v, k); !ok {
			t.Errorf("Field(%q) not found", k)
		}
	}
	f, _ := Field(v, "section.deep.count")
	f.SetInt(9)
	if d.Section.Deep.Count != 9 {
		t.Error("Field did not address the field")
	}
	for _, k := range []string{"hidden", "section.nope", "on.x", ""} {
		if _, ok := Field(v, k); ok {
			t.Errorf("Field(%q) found", k)
		}
	}
}

func TestUnderAndJoin(t *testing.T) {
	for _, c := range [][3]string{{"kill", "allow[0]", "kill.allow[0]"}, {"allow", "[0]", "allow[0]"}, {"", "x", "x"}, {"x", "", "x"}} {
		if got := join(c[0], c[1]); got != c[2] {
			t.Errorf("join(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
	err := Under("kill", &KeyError{Key: "deny[1]", Line: 4, Msg: "empty"})
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "kill.deny[1]" || ke.Line != 4 || err.Error() != "kill.deny[1]: empty" {
		t.Errorf("Under = %#v", err)
	}
	if err := Under("probe", errors.New("boom")); err.Error() != "probe: boom" {
		t.Errorf("Under(plain) = %v", err)
	}
	if Under("x", nil) != nil {
		t.Error("Under(nil) is not nil")
	}
}
