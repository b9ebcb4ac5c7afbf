package app

import (
	"log/slog"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/internal/engine"
)

// newEvents builds the daemon's event history: the engine records into it,
// the store serves it (/api/v1/events, the page, ghostd_events_*).
func newEvents(cfg config.Config, log *slog.Logger, e *engine.Engine, store *exporter.Store) (*events.Recorder, error) {
	rec, err := events.NewRecorder(cfg.Events, nil, log)
	if err != nil {
		return nil, err
	}
	if cfg.Events.File != "" {
		log.Info("events file", "file", cfg.Events.File, "max_bytes", cfg.Events.FileMaxBytes, "files_kept", cfg.Events.FilesKept)
	}
	e.SetEvents(rec)
	store.SetEvents(rec)
	store.SetOwnersTopK(cfg.Metrics.OwnersTopK)
	return rec, nil
}
