package main

import (
	"context"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/internal/config"
	"github.com/matrix-2fa/matrix-2fa/metrics"
	"github.com/matrix-2fa/matrix-2fa/notify"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
)

// newHandler returns the gateway's HTTP handler, and a function that stops
// what it runs in the background (the sweeper of expired held logins); it is
// called after the server has shut down. m records metrics.
func newHandler(core *core, cfg config.Config, log *logrus.Logger, m *metrics.Metrics) (http.Handler, func(), error) {
	mailer, notifier, err := newMail(cfg, log, m)
	if err != nil {
		return nil, nil, err
	}
	obs := observer{m: m, n: notifier, emails: core.svc.Emails}
	proxies, err := ratelimit.ParseProxies(cfg.Server.TrustedProxies)
	if err != nil {
		return nil, nil, err
	}
	hs, err := homeserver.New(cfg.Homeserver, homeserver.Options{WhoAmITTL: cfg.WhoAmITTL, Logger: log,
		TrustForwarded: proxies.TrustedPeer, Observe: m.HomeserverCall})
	if err != nil {
		return nil, nil, err
	}
	if cfg.ServerNoticesToken != "" {
		obs.sn = notify.NewNotifier(serverNotices{hs: hs, token: cfg.ServerNoticesToken}, notify.NotifierConfig{Logger: log, Failures: m})
	}
	core.svc.Observe(obs)
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
			ReadEmails:             cfg.SMTP.Host != "" && cfg.Notify,
			Admin:                  cfg.Admin,
			Provider:               cfg.Provider,
			OAuth:                  cfg.OAuth,
			Policy:                 cfg.Policy,
			RememberTTL:            cfg.RememberBrowser.TTL,
			MaxBotTokens:           cfg.BotTokens.MaxPerUser,
			TrustedClients:         cfg.TrustedClients,
			VersionsCacheTTL:       cfg.VersionsCacheTTL,
		},
		Homeserver: hs,
		Accounts:   core.svc,
		Store:      core.store,
		Box:        core.box,
		Logger:     log,
		Metrics:    m,
		Mailer:     codeMailer(cfg, mailer),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		gw.Run(ctx)
	}()
	return gw.Handler(), func() {
		cancel()
		<-done
		ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		for _, n := range []*notify.Notifier{notifier, obs.sn} {
			if n != nil {
				n.Close(ctx)
			}
		}
	}, nil
}

// newMail returns the mailer and notifier the configuration asks for (nil
// when there is no SMTP server, or no notices).
func newMail(cfg config.Config, log *logrus.Logger, m *metrics.Metrics) (*notify.Mailer, *notify.Notifier, error) {
	if cfg.SMTP.Host == "" {
		return nil, nil, nil
	}
	smtp := cfg.SMTP
	smtp.Defaults()
	mailer, err := notify.NewMailer(smtp, time.Now)
	if err != nil || !cfg.Notify {
		return mailer, nil, err
	}
	return mailer, notify.NewNotifier(mailer, notify.NotifierConfig{Logger: log, Failures: m}), nil
}

// codeMailer is the gateway's e-mail code sender: nil unless e-mail codes are on.
func codeMailer(cfg config.Config, mailer *notify.Mailer) gateway.CodeMailer {
	if !cfg.EmailCodes || mailer == nil {
		return nil
	}
	return mailer
}
