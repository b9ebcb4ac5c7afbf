// Package kill decides, under an opt-in policy, which confirmed ghosts and CLOSE_WAIT leaks to end, and ends them: re-checked, re-probed, rate-limited and audited.
package kill
