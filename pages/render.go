package pages

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/ratelimit"
)

// The pages (fallback, sign-in, self-service) are server-rendered from
// embedded templates. Each template file under web/templates defines a block
// named after the file ("fallback.html", …) that uses "layout" from
// layout.html. Nothing is loaded from another origin: the one stylesheet is
// served by the gateway, and inline scripts run only with the page's nonce.

//go:embed web/templates/*.html
var templateFS embed.FS

//go:embed web/static
var staticFS embed.FS

var (
	pagesOnce sync.Once
	pages     *template.Template
)

func pageTemplates() *template.Template {
	pagesOnce.Do(func() {
		pages = template.Must(template.New("").Funcs(template.FuncMap{
			"join": strings.Join,
		}).ParseFS(templateFS, "web/templates/*.html"))
	})
	return pages
}

// StaticPrefix is where the pages' assets are served.
const StaticPrefix = "/_matrix2fa/static/"

// Static serves the pages' assets under StaticPrefix.
func Static() http.Handler {
	sub, _ := fs.Sub(staticFS, "web/static")
	files := http.StripPrefix(StaticPrefix, http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}

// PageData is what every page template gets, plus its own fields in Data.
type PageData struct {
	Title string
	// Nonce authorises the page's inline scripts under its CSP.
	Nonce string
	// CSRF is the token forms must send back in the "csrf" field.
	CSRF string
	// Error is shown inline above the form.
	Error string
	Data  any
}

// newNonce is a CSP nonce: 128 random bits, base64.
func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

// renderPage writes template name with a strict Content-Security-Policy: only
// this origin, inline scripts only with the nonce, images also from data: (the
// QR code), no framing, forms only to this origin.
func renderPage(w http.ResponseWriter, status int, name string, d PageData) {
	if d.Nonce == "" {
		d.Nonce = newNonce()
	}
	var buf bytes.Buffer
	if err := pageTemplates().ExecuteTemplate(&buf, name, d); err != nil {
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+d.Nonce+"'; style-src 'self'; img-src 'self' data:; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// csrf signs form tokens: an HMAC of a purpose and a binding (a session ID,
// a cookie value) under a key derived from the master key (the same on every
// replica), valid for the hour it was made in and the next.
type csrf struct{ key []byte }

func (c csrf) token(purpose, binding string, now time.Time) string {
	return c.at(purpose, binding, now.Unix()/3600)
}

func (c csrf) at(purpose, binding string, hour int64) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(purpose + "\x00" + binding + "\x00"))
	m.Write([]byte{byte(hour >> 56), byte(hour >> 48), byte(hour >> 40), byte(hour >> 32), byte(hour >> 24), byte(hour >> 16), byte(hour >> 8), byte(hour)})
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// check verifies a token in constant time.
func (c csrf) check(purpose, binding, token string, now time.Time) bool {
	h := now.Unix() / 3600
	ok := hmac.Equal([]byte(token), []byte(c.at(purpose, binding, h)))
	ok = hmac.Equal([]byte(token), []byte(c.at(purpose, binding, h-1))) || ok
	return ok
}

// messageData is the message page's template data.
type messageData struct{ Paragraphs []string }

// renderMessage shows a page of sentences.
func renderMessage(w http.ResponseWriter, status int, title string, text ...string) {
	renderPage(w, status, "message.html", PageData{Title: title, Data: &messageData{text}})
}

// renderError shows template name again with err's sentence (httperr, the
// one table) and status; anything internal is logged with its detail.
func (p *Pages) renderError(w http.ResponseWriter, r *http.Request, name string, page PageData, err error) {
	status, text := httperr.Page(err)
	l := httpx.Logger(r).WithError(err)
	if status >= 500 {
		l.Error("page: internal error")
	} else {
		l.Info("page: refused")
	}
	page.Error = text
	renderPage(w, status, name, page)
}

// Limited answers a page request refused by the rate limit.
func Limited(w http.ResponseWriter, wait time.Duration) {
	httpx.SetRetryAfter(w.Header(), wait)
	renderMessage(w, http.StatusTooManyRequests, "Too many attempts",
		"Too many attempts from your network. Try again in "+httperr.FormatWait(wait)+".")
}

// Render writes template name the way every page is written (strict CSP, no
// caching, no referrer), for the pages of other packages whose templates live
// here (admin.html).
func Render(w http.ResponseWriter, status int, name string, d PageData) {
	renderPage(w, status, name, d)
}

// CSRF signs and checks form tokens for the pages of other packages, as the
// pages here do: an HMAC of a purpose and a binding, valid for the hour it
// was made in and the next.
type CSRF struct{ c csrf }

// NewCSRF returns a signer under key (a Sealer's MACKey).
func NewCSRF(key []byte) CSRF { return CSRF{csrf{key: key}} }

// Token returns the token for purpose and binding at now.
func (c CSRF) Token(purpose, binding string, now time.Time) string {
	return c.c.token(purpose, binding, now)
}

// Check verifies token in constant time.
func (c CSRF) Check(purpose, binding, token string, now time.Time) bool {
	return c.c.check(purpose, binding, token, now)
}

// Secure reports whether r reached the gateway over https (directly, through
// a trusted proxy that says so, or by an https publicBaseURL): cookies are
// then marked Secure.
func Secure(r *http.Request, publicBaseURL string, proxies ratelimit.Proxies) bool {
	return r.TLS != nil || strings.HasPrefix(publicBaseURL, "https://") ||
		(proxies.TrustedPeer(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"))
}
