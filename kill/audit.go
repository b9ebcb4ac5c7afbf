package kill

import (
	"context"
	"log/slog"

	"github.com/ghostd/ghostd/inventory"
)

// audit writes the one structured line for a kill action.
func (k *Killer) audit(c *Candidate, cur *inventory.Socket, rec *Record) {
	result, level := "ok", slog.LevelInfo
	errText := ""
	if rec.Err != nil {
		result, level, errText = "error", slog.LevelWarn, rec.Err.Error()
	}
	k.log.LogAttrs(context.Background(), level, "kill",
		slog.Bool("audit", true),
		slog.String("netns", c.Netns),
		slog.Uint64("netns_inode", cur.Netns),
		slog.String("local", cur.Local.String()),
		slog.String("remote", cur.Remote.String()),
		slog.Uint64("cookie", cur.Cookie),
		slog.String("state", cur.State.String()),
		slog.Int("pid", c.PID),
		slog.String("comm", c.Comm),
		slog.String("unit", c.Unit),
		slog.String("verdict", string(c.Verdict)),
		slog.String("reasons", c.Reasons.String()),
		slog.Int("probes_sent", c.ProbesSent),
		slog.Int("replies", c.Replies),
		slog.Float64("idle_seconds", c.IdleSeconds),
		slog.Float64("ghost_seconds", k.now().Sub(c.GhostSince).Seconds()),
		slog.String("mode", string(rec.Mode)),
		slog.String("result", result),
		slog.String("error", errText),
	)
}
