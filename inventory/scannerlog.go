package inventory

import (
	"errors"
	"strings"
)

// noteListErr keeps the listing error and logs it once, when it first
// appears or changes.
func (s *Scanner) noteListErr(err error) {
	s.mu.Lock()
	// Compare without the numbers ("3 of 108 processes unreadable"): the
	// process count moves at every scan, the problem does not.
	changed := errShape(err) != errShape(s.listErr)
	s.listErr = err
	s.mu.Unlock()
	if changed && err != nil {
		s.log.Warn("some network namespaces cannot be listed", "err", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
}

// errShape is err's text with digits removed.
func errShape(err error) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, errString(err))
}

// ListError returns what kept the last Scan from listing every namespace
// (typically permission errors without CAP_SYS_ADMIN/CAP_SYS_PTRACE), or nil.
func (s *Scanner) ListError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listErr
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// noteNamespaceErr logs a namespace's error when it first appears or changes,
// and its recovery.
func (s *Scanner) noteNamespaceErr(e *nsEntry, err error) {
	msg := errString(err)
	if msg == e.lastErr {
		return
	}
	prev := e.lastErr
	e.lastErr = msg
	switch {
	case err != nil && errors.Is(err, ErrNamespaceGone):
		s.log.Debug("network namespace vanished during scan", "netns", e.ns.Name, "inode", e.ns.Inode)
	case err != nil:
		s.log.Warn("cannot scan network namespace", "netns", e.ns.Name, "inode", e.ns.Inode, "err", err)
	case prev != "":
		s.log.Info("network namespace scannable again", "netns", e.ns.Name, "inode", e.ns.Inode)
	}
}
