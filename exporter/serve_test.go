package exporter

import (
	"context"
	"log/slog"
	"net/http"
)

// serve binds listenAddrs and serves h on them until ctx is done (see
// ServeListeners); the daemon binds first and serves later, tests do both.
func serve(ctx context.Context, h http.Handler, listenAddrs []string, webConfigFile string, log *slog.Logger) error {
	ls, err := Listen(listenAddrs)
	if err != nil {
		return err
	}
	return ServeListeners(ctx, h, ls, webConfigFile, log)
}
