package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
)

// ShutdownTimeout bounds the graceful shutdown of the HTTP servers.
const ShutdownTimeout = 2 * time.Second

// HTTP server limits: a client that sends its request slowly, reads its
// response slowly or idles on a keep-alive connection is cut off, and a
// request's headers are bounded. GET requests have no body to wait for.
const (
	ReadTimeout    = 30 * time.Second
	WriteTimeout   = 60 * time.Second
	IdleTimeout    = 2 * time.Minute
	MaxHeaderBytes = 16 << 10
)

// Listen binds every address. Bind first, tell systemd READY=1, then
// ServeListeners: scrapes never see "connection refused" after readiness.
func Listen(addrs []string) ([]net.Listener, error) {
	if len(addrs) == 0 {
		return nil, errors.New("exporter: no listen address")
	}
	ls := make([]net.Listener, 0, len(addrs))
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("exporter: listen: %w", err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// ServeListeners serves h on every listener through the exporter toolkit
// (TLS and basic auth from webConfigFile, "" for plain HTTP) until ctx is
// done, then shuts down gracefully within ShutdownTimeout and returns nil.
// It returns early with an error when a listener fails. It closes the listeners.
func ServeListeners(ctx context.Context, h http.Handler, ls []net.Listener, webConfigFile string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if webConfigFile != "" {
		if err := web.Validate(webConfigFile); err != nil {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("exporter: web config %s: %w", webConfigFile, err)
		}
	}
	systemdSocket := false
	flags := &web.FlagConfig{
		WebListenAddresses: &[]string{},
		WebSystemdSocket:   &systemdSocket,
		WebConfigFile:      &webConfigFile,
	}
	// One http.Server per listener: web.Serve wraps server.Handler, so a
	// shared server would race.
	servers := make([]*http.Server, len(ls))
	errc := make(chan error, len(ls))
	for i, l := range ls {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       ReadTimeout,
			// WriteTimeout bounds every response; /api/v1/sessions streams
			// and extends its own deadline while the client keeps reading.
			WriteTimeout:   WriteTimeout,
			IdleTimeout:    IdleTimeout,
			MaxHeaderBytes: MaxHeaderBytes,
			ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		servers[i] = srv
		go func() {
			err := web.Serve(l, srv, flags, log)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
	}
	var first error
	pending := len(ls)
	select {
	case <-ctx.Done():
	case first = <-errc:
		pending--
		if first != nil {
			first = fmt.Errorf("exporter: serve: %w", first)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}
	for _, l := range ls {
		l.Close() // a listener whose Serve never started is not closed by Shutdown
	}
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && first == nil && ctx.Err() == nil {
			first = fmt.Errorf("exporter: serve: %w", err)
		}
	}
	return first
}
