// Package events records what happened to suspect sessions (suspect, ghost, alive, killed, gone) in a bounded in-memory ring and, optionally, a rotated JSONL file.
package events
