package app

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// termSafe returns s fit to print on a terminal: control characters
// (escape sequences included) and invalid UTF-8 are written as Go escapes,
// so a namespace name or a comm that a local user chose cannot move the
// cursor, recolour the screen or hide a row of `ghostd scan`.
func termSafe(s string) string {
	ascii := true // printable ASCII only: the usual name, clean at a glance
	for i := 0; i < len(s) && ascii; i++ {
		ascii = s[i] >= 0x20 && s[i] < 0x7f
	}
	if ascii {
		return s
	}
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
