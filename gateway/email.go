package gateway

import (
	"context"
	"strings"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/flows"
	"github.com/matrix-2fa/matrix-2fa/notify"
)

// E-mail codes (m.login.2fa.email) are offered to enrolled users with a
// verified e-mail address at the homeserver when the operator configured
// SMTP and turned them on. The addresses are read from the homeserver with
// the user's own access token whenever the gateway holds one (a held login,
// a guarded request, the two-factor endpoints) and remembered, so a code can
// be sent where no token is at hand (the fallback page).

// CodeMailer mails e-mail codes (notify.Mailer).
type CodeMailer interface {
	SendCode(ctx context.Context, c notify.CodeMail) error
}

// Factors are the 2FA stages userID may use now.
func (g *Gateway) Factors(ctx context.Context, userID string) []string {
	if g.mailer == nil {
		return flows.Factors(false)
	}
	addresses, err := g.acc.Emails(ctx, userID)
	return flows.Factors(err == nil && len(addresses) > 0)
}

// RememberEmails reads the verified e-mail addresses of token's owner from
// the homeserver and remembers them (when e-mail codes or notices are on).
func (g *Gateway) RememberEmails(ctx context.Context, userID, token string) {
	if (g.mailer == nil && !g.cfg.ReadEmails) || token == "" {
		return
	}
	addresses, err := g.hs.EmailAddresses(ctx, token)
	if err == nil {
		err = g.acc.RememberEmails(ctx, userID, addresses)
	}
	if err != nil {
		g.log.WithError(err).WithField("user_id", userID).Warn("reading the user's e-mail addresses")
	}
}

// SendCode implements flows.CodeSender: a new code to the user's first
// verified address.
func (g *Gateway) SendCode(ctx context.Context, userID string) (string, error) {
	addresses, err := g.acc.Emails(ctx, userID)
	if err != nil {
		return "", err
	}
	if len(addresses) == 0 || g.mailer == nil {
		return "", flows.ErrNoEmail
	}
	code, err := g.acc.NewEmailCode(ctx, userID)
	if err != nil {
		return "", err
	}
	server := ""
	if p := g.serverName.Load(); p != nil {
		server = *p
	}
	err = g.mailer.SendCode(ctx, notify.CodeMail{To: addresses[0], ServerName: server, Code: code, ValidFor: account.EmailCodeTTL})
	if err != nil {
		g.log.WithError(err).WithField("user_id", userID).Error("sending an e-mail code")
		return "", flows.ErrNotSent
	}
	return maskAddress(addresses[0]), nil
}

// maskAddress shows an address without giving it away: a***@example.org.
func maskAddress(a string) string {
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" {
		return "***"
	}
	return local[:1] + "***@" + domain
}
