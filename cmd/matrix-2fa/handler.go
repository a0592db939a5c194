package main

import (
	"net/http"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/internal/config"
)

// newHandler returns the HTTP handler serve runs, and a function that releases
// what the handler holds (called after the server has shut down).
//
// For now it serves only GET /health; the gateway replaces this body.
func newHandler(core *core, cfg config.Config, log *logrus.Logger) (http.Handler, func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	return mux, func() {}, nil
}
