package repotest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository's top directory, seen from this package.
const root = "../.."

// files returns the repository's Go and Markdown files, outside vendor
// trees, testdata and hidden directories.
func files(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || name == "bin" || name == "dist") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(name, ".go") || strings.HasSuffix(name, ".md")) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNoCitesOutsideTheRepository: the code and the docs cite the project's
// own design doc (docs/design.md), never a file outside the repository.
func TestNoCitesOutsideTheRepository(t *testing.T) {
	bad := regexp.MustCompile(`\bDESIGN\.md\b|\.\./shared/`)
	for _, f := range files(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if f == filepath.Join(root, "internal/repotest/cites_test.go") {
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			if bad.MatchString(line) {
				t.Errorf("%s:%d cites a file outside the repository: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}

// TestCitedFilesExist: every repository path a document or a comment names
// (a doc under docs, a source file such as probe/accept.go) exists.
func TestCitedFilesExist(t *testing.T) {
	// A path of at least two components ending in a file type we keep, as
	// prose or a Markdown link writes it.
	// Only where a path starts (not inside a URL or an absolute path), in
	// Markdown and in Go comments; Go code names run-time paths.
	cite := regexp.MustCompile("(?:^|[\\s(\\[`])((?:\\.\\./)?(?:docs|probe|tracker|inventory|exporter|kill|internal|systemd|cmd|packaging|alerts|dashboards|deploy|scripts|mk)/[A-Za-z0-9_./-]+\\.(?:md|go|yml|yaml|json|c|h|8|png|service|sh|mk))\\b")
	checked := 0
	for _, f := range files(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasSuffix(f, ".go") {
				_, comment, ok := strings.Cut(line, "// ")
				if !ok {
					continue
				}
				line = comment
			}
			for _, sub := range cite.FindAllStringSubmatch(line, -1) {
				m := sub[1]
				if strings.Contains(m, "*") {
					continue
				}
				p := filepath.Join(root, strings.TrimPrefix(m, "../"))
				if strings.HasPrefix(m, "../") {
					p = filepath.Join(filepath.Dir(f), m)
				}
				if _, err := os.Stat(p); err != nil {
					// A path relative to the citing file's own directory.
					if _, err2 := os.Stat(filepath.Join(filepath.Dir(f), m)); err2 != nil {
						t.Errorf("%s:%d cites %s, which does not exist", f, i+1, m)
					}
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("found no cited paths: the pattern is broken")
	}
}
