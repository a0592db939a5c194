package pages

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/canonical"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The account page's lists: remembered browsers (revoke one or all) and
// tokens for bots and scripts. A full web session (password and, with 2FA
// on, the code) makes a bot token from a name and the password: the gateway
// logs in at the homeserver with that password, the device named after the
// token, shows the access token once and keeps the device ID, the token's
// SHA-256 and the token sealed for the user (storage.BotToken). Revoking
// opens the sealed token and logs it out at the homeserver; deleting the
// device instead would need the user's password again (the homeserver's
// UIA), which a one-click revoke does not have. rotate-key re-seals them.

const (
	botDevicePrefix = "Bot token: "
	maxBotName      = 64
	timeLayout      = "2 Jan 2006, 15:04 UTC"
)

// listsView is what the status page shows of the lists.
type listsView struct {
	RememberOn bool
	Browsers   []browserView
	BotsOn     bool
	Bots       []botView
	BotsFull   bool
	NewToken   *newTokenView
}

type browserView struct {
	ID, Created, Expires, UserAgent, Addr string
}

type botView struct {
	ID, Name, DeviceID, Created string
}

type newTokenView struct {
	Name, DeviceID, Token string
}

// lists reads the user's remembered browsers and bot tokens.
func (p *Pages) lists(ctx context.Context, userID string) (*listsView, error) {
	v := &listsView{RememberOn: p.cfg.RememberTTL > 0 && p.remember != nil, BotsOn: p.cfg.MaxBotTokens > 0 && p.remember != nil}
	if p.remember == nil {
		return v, nil
	}
	browsers, err := p.remember.Browsers(ctx, userID, p.now())
	if err != nil {
		return nil, err
	}
	for _, b := range browsers {
		v.Browsers = append(v.Browsers, browserView{ID: base64.RawURLEncoding.EncodeToString(b.Hash),
			Created: b.CreatedAt.UTC().Format(timeLayout), Expires: b.ExpiresAt.UTC().Format(timeLayout), UserAgent: b.UserAgent, Addr: b.Addr})
	}
	bots, err := p.remember.BotTokens(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, t := range bots {
		v.Bots = append(v.Bots, botView{ID: t.ID, Name: t.Name, DeviceID: t.DeviceID, Created: t.CreatedAt.UTC().Format(timeLayout)})
	}
	v.BotsFull = len(bots) >= p.cfg.MaxBotTokens
	return v, nil
}

// selfForgetBrowsers revokes the form's remembered browser, or all of them.
func (p *Pages) selfForgetBrowsers(w http.ResponseWriter, r *http.Request, s *selfSession, all bool) {
	if p.remember == nil {
		p.renderStatus(w, r, http.StatusBadRequest, s, "", "Unknown action.")
		return
	}
	ctx := r.Context()
	if all {
		n, err := p.remember.DeleteBrowsers(ctx, s.userID)
		if err != nil {
			p.selfInternal(w, r, s, err)
			return
		}
		httpx.Logger(r).WithField("count", n).Info("self-service: remembered browsers revoked")
		p.renderStatus(w, r, http.StatusOK, s, "Every remembered browser was forgotten: they will be asked for a code again.", "")
		return
	}
	var ok bool
	var err error
	if hash, derr := base64.RawURLEncoding.DecodeString(r.PostForm.Get("id")); derr == nil && len(hash) == sha256.Size {
		ok, err = p.remember.DeleteBrowser(ctx, s.userID, hash)
	}
	switch {
	case err != nil:
		p.selfInternal(w, r, s, err)
	case !ok:
		p.renderStatus(w, r, http.StatusNotFound, s, "", "That browser is no longer remembered.")
	default:
		httpx.Logger(r).Info("self-service: remembered browser revoked")
		p.renderStatus(w, r, http.StatusOK, s, "The browser was forgotten: it will be asked for a code again.", "")
	}
}

// botName checks a bot token's name: 1 to maxBotName characters, no control
// characters.
func botName(raw string) (string, bool) {
	name := strings.TrimSpace(raw)
	if name == "" || utf8.RuneCountInString(name) > maxBotName || !utf8.ValidString(name) {
		return "", false
	}
	return name, !strings.ContainsFunc(name, unicode.IsControl)
}

// selfBotCreate makes a bot token: a homeserver login with the form's
// password, its device named after the token, shown once.
func (p *Pages) selfBotCreate(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	show := func(status int, msg string) { p.renderStatus(w, r, status, s, "", msg) }
	name, ok := botName(r.PostForm.Get("name"))
	password := r.PostForm.Get("password")
	switch {
	case p.cfg.MaxBotTokens <= 0 || p.remember == nil:
		show(http.StatusBadRequest, "Unknown action.")
		return
	case !ok || password == "" || len(password) > 1024:
		show(http.StatusBadRequest, "Enter a name (up to 64 characters) and your password.")
		return
	}
	if bots, err := p.remember.BotTokens(ctx, s.userID); err != nil || len(bots) >= p.cfg.MaxBotTokens {
		if err != nil {
			p.selfInternal(w, r, s, err)
			return
		}
		show(http.StatusBadRequest, msgBotsFull)
		return
	}
	login, err := p.hs.PasswordLogin(ctx, s.userID, password, "", botDevicePrefix+name)
	if err != nil {
		p.stepUpRefused(w, r, s, show, "Wrong password.", err)
		return
	}
	if !canonical.SameUser(s.userID, string(login.UserID)) {
		p.botFailed(w, r, s, login.AccessToken, errors.New("pages: the homeserver logged in another user"))
		return
	}
	t, err := p.storeBotToken(ctx, s.userID, name, login)
	if err != nil {
		p.botFailed(w, r, s, login.AccessToken, err)
		return
	}
	p.acc.Record(ctx, s.userID, storage.AuditBotTokenCreated, name+" ("+t.DeviceID+")")
	httpx.Logger(r).WithField("device_id", t.DeviceID).Info("self-service: bot token created")
	p.renderStatusWith(w, r, http.StatusOK, s, "The token was made. Copy it now: it will not be shown again.", "",
		&newTokenView{Name: name, DeviceID: t.DeviceID, Token: login.AccessToken})
}

// storeBotToken keeps what the gateway keeps of a new bot token.
func (p *Pages) storeBotToken(ctx context.Context, userID, name string, login *mautrix.RespLogin) (storage.BotToken, error) {
	sealed, err := p.box.Seal(userID, []byte(login.AccessToken))
	if err != nil {
		return storage.BotToken{}, err
	}
	h := sha256.Sum256([]byte(login.AccessToken))
	t := storage.BotToken{ID: httpx.RandomToken(12), UserID: userID, Name: name, DeviceID: string(login.DeviceID),
		Hash: h[:], Secret: sealed, KeyID: p.box.KeyID(), CreatedAt: p.now()}
	return t, p.remember.PutBotToken(ctx, t, p.cfg.MaxBotTokens)
}

// botFailed logs a bot token's login out again after a failure, and says so.
// (The limit reached meanwhile, by a concurrent request, is said as such.)
func (p *Pages) botFailed(w http.ResponseWriter, r *http.Request, s *selfSession, accessToken string, err error) {
	if lerr := p.hs.Logout(context.WithoutCancel(r.Context()), accessToken); lerr != nil {
		httpx.Logger(r).WithError(lerr).Error("self-service: logging out an unused bot login")
	}
	if errors.Is(err, storage.ErrFull) {
		p.renderStatus(w, r, http.StatusBadRequest, s, "", msgBotsFull)
		return
	}
	p.selfInternal(w, r, s, err)
}

// msgBotsFull says the user holds max_per_user bot tokens.
const msgBotsFull = "You have as many tokens as allowed. Revoke one first."

// selfBotRevoke revokes the form's bot token: the record goes, and its login
// is logged out at the homeserver (if that fails, the record is put back).
func (p *Pages) selfBotRevoke(w http.ResponseWriter, r *http.Request, s *selfSession) {
	ctx := r.Context()
	if p.remember == nil {
		p.renderStatus(w, r, http.StatusBadRequest, s, "", "Unknown action.")
		return
	}
	t, err := p.remember.TakeBotToken(ctx, s.userID, r.PostForm.Get("id"))
	if errors.Is(err, storage.ErrNotFound) {
		p.renderStatus(w, r, http.StatusNotFound, s, "", "That token is already revoked.")
		return
	}
	var token []byte
	if err == nil {
		token, err = p.box.Open(s.userID, t.KeyID, t.Secret)
	}
	if err == nil {
		err = p.hs.Logout(context.WithoutCancel(ctx), string(token))
		clear(token)
	}
	if err != nil {
		if t.ID != "" {
			if perr := p.remember.PutBotToken(context.WithoutCancel(ctx), t, 0); perr != nil {
				httpx.Logger(r).WithError(perr).WithField("device_id", t.DeviceID).Error("self-service: could not keep an unrevoked bot token")
			}
		}
		p.selfInternal(w, r, s, err)
		return
	}
	p.acc.Record(ctx, s.userID, storage.AuditBotTokenRevoked, t.Name+" ("+t.DeviceID+")")
	httpx.Logger(r).WithField("device_id", t.DeviceID).Info("self-service: bot token revoked")
	p.renderStatus(w, r, http.StatusOK, s, "The token "+t.Name+" was revoked.", "")
}
