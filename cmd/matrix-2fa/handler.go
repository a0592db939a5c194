package main

import (
	"context"
	"net/http"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/internal/config"
	"github.com/matrix-2fa/matrix-2fa/metrics"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
)

// newHandler returns the gateway's HTTP handler, and a function that stops
// what it runs in the background (the sweeper of expired held logins); it is
// called after the server has shut down. m records metrics.
func newHandler(core *core, cfg config.Config, log *logrus.Logger, m *metrics.Metrics) (http.Handler, func(), error) {
	core.svc.Observe(observer{m})
	proxies, err := ratelimit.ParseProxies(cfg.Server.TrustedProxies)
	if err != nil {
		return nil, nil, err
	}
	hs, err := homeserver.New(cfg.Homeserver, homeserver.Options{WhoAmITTL: cfg.WhoAmITTL, Logger: log,
		TrustForwarded: proxies.TrustedPeer, Observe: m.HomeserverCall})
	if err != nil {
		return nil, nil, err
	}
	gw := gateway.New(gateway.Options{
		Config: gateway.Config{
			LoginTTL:               cfg.Login.SessionTTL,
			TokenTTL:               cfg.Login.TokenTTL,
			UIATTL:                 cfg.UIA.SessionTTL,
			SSOProviderID:          cfg.Login.SSOProviderID,
			SSOProviderName:        cfg.Login.SSOProviderName,
			RedirectAllowlist:      cfg.Login.RedirectAllowlist,
			ForbidBarePassword:     cfg.Login.ForbidBarePassword,
			MaxHeld:                cfg.Login.MaxHeldPerUser,
			PasswordWithCode:       cfg.Login.PasswordWithCode,
			HidePasswordFlow:       cfg.Login.HidePasswordFlow,
			FallbackCompletesLogin: cfg.Login.FallbackCompletesLogin,
			TrustedProxies:         proxies,
			RateEvery:              cfg.RateLimit.Every,
			RateBurst:              cfg.RateLimit.Burst,
			BodyTimeout:            cfg.Server.BodyTimeout,
			PassThroughBodyTimeout: cfg.Server.PassThroughBodyTimeout,
			AdminAPI:               cfg.AdminAPI,
			PublicBaseURL:          cfg.PublicBaseURL,
			Admin:                  cfg.Admin,
			Provider:               cfg.Provider,
		},
		Homeserver: hs,
		Accounts:   core.svc,
		Store:      core.store,
		Box:        core.box,
		Logger:     log,
		Metrics:    m,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		gw.Run(ctx)
	}()
	return gw.Handler(), func() { cancel(); <-done }, nil
}
