package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/internal/config"
	"github.com/matrix-2fa/matrix-2fa/metrics"
)

// shutdownTimeout bounds how long serve waits for requests in flight.
const shutdownTimeout = 10 * time.Second

func (c *cli) serve(ctx context.Context, args []string) int {
	fset := c.newFlagSet("serve", "serve [--config FILE] [--homeserver URL] [--listen ADDR] [--data-dir DIR]")
	var cf configFlags
	cf.register(fset, true)
	rest, code, ok := parseArgs(fset, args)
	if !ok {
		return code
	}
	if !c.wantArgs(fset, rest) {
		return exitUsage
	}
	cfg, ok := c.loadValid("serve", &cf, true)
	if !ok {
		return exitUsage
	}
	return c.serveConfig(ctx, cfg, newLogger(cfg.Log, c.stderr), nil)
}

// serveConfig runs the gateway for a validated configuration until ctx ends or
// a signal arrives; ready, if not nil, is called with the listening address.
func (c *cli) serveConfig(ctx context.Context, cfg config.Config, log *logrus.Logger, ready func(addr string)) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	core, err := openCore(ctx, cfg, log)
	if err != nil {
		log.WithError(err).Error("cannot start")
		return exitError
	}
	defer core.Close()
	log.WithField("database", databaseName(cfg)).WithField("key_id", core.box.KeyID()).Info("database open, encryption key checked")

	m := metrics.New()
	handler, release, err := newHandler(core, cfg, log, m)
	if err != nil {
		log.WithError(err).Error("cannot set up the HTTP handler")
		return exitError
	}
	defer release()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.WithError(err).Error("cannot listen")
		return exitError
	}
	errLog, closeErrLog := newStdLogger(log)
	defer closeErrLog()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if cfg.Metrics.Listen != "" {
		msrv, err := serveMetrics(cfg.Metrics.Listen, m, log)
		if err != nil {
			log.WithError(err).Error("cannot listen for metrics")
			srv.Close()
			return exitError
		}
		defer msrv.Close()
	}
	log.WithField("homeserver", cfg.Homeserver).Infof("listening on %s", ln.Addr())
	if ready != nil {
		ready(ln.Addr().String())
	}

	select {
	case err := <-served:
		log.WithError(err).Error("server stopped")
		return exitError
	case <-ctx.Done():
	}
	stop() // a second signal now kills the process the default way
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.WithError(err).Error("graceful shutdown did not finish; closing connections")
		srv.Close()
		return exitError
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.WithError(err).Error("server stopped")
		return exitError
	}
	log.Info("stopped")
	return exitOK
}

// databaseName names the database for the log: the SQLite path, or the
// PostgreSQL server and database without credentials.
func databaseName(cfg config.Config) string {
	if !cfg.Postgres() {
		return cfg.DatabasePath()
	}
	u, err := url.Parse(cfg.Database)
	if err != nil {
		return "postgres"
	}
	return "postgres://" + u.Host + u.Path
}

// serveMetrics serves /metrics on its own listener.
func serveMetrics(addr string, m *metrics.Metrics, log *logrus.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Infof("metrics on http://%s/metrics", ln.Addr())
	return srv, nil
}
