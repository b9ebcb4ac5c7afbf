package inventory

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestListErrorLoggedOnce: the same listing problem with a different process
// count is logged once, in one line; a different problem is logged again.
func TestListErrorLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	s := &Scanner{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for _, n := range []string{"1 of 106", "1 of 108", "2 of 111"} {
		s.noteListErr(errors.Join(errors.New("inventory: list host namespace: permission denied"),
			errors.New("inventory: list process namespaces: "+n+" processes unreadable")))
	}
	if got := strings.Count(buf.String(), "cannot be listed"); got != 1 {
		t.Errorf("logged %d times, want once:\n%s", got, buf.String())
	}
	if lines := strings.Count(strings.TrimSpace(buf.String()), "\n"); lines != 0 {
		t.Errorf("the warning spans %d lines:\n%s", lines+1, buf.String())
	}
	s.noteListErr(errors.New("inventory: list /run/netns: permission denied"))
	if got := strings.Count(buf.String(), "cannot be listed"); got != 2 {
		t.Errorf("a new problem was not logged:\n%s", buf.String())
	}
}
