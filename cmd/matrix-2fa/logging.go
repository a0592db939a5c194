package main

import (
	"io"
	stdlog "log"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/internal/config"
)

// newLogger returns a logger writing to w at the configured level and format
// (both already validated by config.Validate).
func newLogger(cfg config.Log, w io.Writer) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(w)
	if level, err := logrus.ParseLevel(cfg.Level); err == nil {
		log.SetLevel(level)
	}
	if strings.EqualFold(cfg.Format, "json") {
		log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return log
}

// newStdLogger adapts log for net/http's error log, at warning level; call
// close when the logger is no longer used.
func newStdLogger(log *logrus.Logger) (l *stdlog.Logger, close func()) {
	w := log.WriterLevel(logrus.WarnLevel)
	return stdlog.New(w, "", 0), func() { w.Close() }
}
