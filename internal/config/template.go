package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"text/template"
	"time"
)

// templateFuncs quote values so that any string (quotes, backslashes, '#')
// survives the round trip: a JSON string or array is valid YAML flow syntax.
var templateFuncs = template.FuncMap{
	"q": func(v any) string {
		switch x := v.(type) {
		case time.Duration:
			v = x.String()
		case []string:
			if x == nil {
				v = []string{}
			}
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			panic(err) // only strings, durations and string slices are quoted
		}
		return strings.TrimSuffix(b.String(), "\n")
	},
}

var fileTemplate = template.Must(template.New("config").Funcs(templateFuncs).Parse(`# matrix-2fa configuration.
# Every option has a default; 'matrix-2fa serve --homeserver URL' runs with none.
# Durations use Go syntax: 30s, 5m, 1h.

# Address the gateway listens on. Point clients (and your reverse proxy's
# /_matrix/client) here; keep the homeserver itself on loopback only.
listen: {{q .Listen}}

# Base URL of the homeserver's client-server API.
homeserver: {{q .Homeserver}}

# URL clients use to reach the gateway (for pages and redirects).
# Empty: taken from each request's Host header.
public_base_url: {{q .PublicBaseURL}}

# Directory for the SQLite database and the encryption key file.
data_dir: {{q .DataDir}}
{{if .Database}}database: {{q .Database}}{{else}}# database: {{q .DatabasePath}}{{end}}
# SQLite durability: NORMAL survives a process crash, FULL also a power loss.
sqlite_synchronous: {{q .SQLiteSynchronous}}

# TOTP secrets are encrypted at rest (AES-256-GCM). The key file is created
# with mode 0600 on first run; back it up, without it no secret can be read.
{{if .KeyFile}}key_file: {{q .KeyFile}}{{else}}# key_file: {{q .KeyFilePath}}{{end}}
# Or give the base64 key inline (it then wins over key_file):
{{if .Key}}key: {{q .Key}}{{else}}# key: ""{{end}}

two_factor:
  # Name shown in authenticator apps.
  issuer: {{q .TwoFactor.Issuer}}
  # TOTP parameters for new enrolments (existing ones keep theirs).
  algorithm: {{q .TwoFactor.Algorithm}}   # SHA1, SHA256 or SHA512
  digits: {{.TwoFactor.Digits}}             # 6 or 8
  period: {{.TwoFactor.Period}}            # seconds
  # Accepted clock drift, in steps either side of now.
  skew: {{.TwoFactor.Skew}}
  secret_size: {{.TwoFactor.SecretSize}}       # bytes, at least 20
  # How long an unconfirmed enrolment stays valid.
  enrolment_ttl: {{q .TwoFactor.EnrolmentTTL}}
  recovery_codes: {{.TwoFactor.RecoveryCodes}}
  # Failed 2FA attempts per user (TOTP and recovery together) before every
  # attempt is refused with 429 M_LIMIT_EXCEEDED until the window has passed.
  # Each further round of lockout_limit failures without a success doubles the
  # wait (15 min, 30 min, 1 h, ...); 'matrix-2fa admin unlock USER' lifts it.
  lockout_limit: {{.TwoFactor.LockoutLimit}}
  lockout_window: {{q .TwoFactor.LockoutWindow}}
  # argon2id cost of recovery-code hashes, and how many may run at once.
  argon2:
    time: {{.TwoFactor.Argon2.Time}}
    memory_kib: {{.TwoFactor.Argon2.MemoryKiB}}
    threads: {{.TwoFactor.Argon2.Threads}}
  hashes_at_once: {{.TwoFactor.HashesAtOnce}}

login:
  # How long a correct password waits for its second factor.
  session_ttl: {{q .Login.SessionTTL}}
  # Lifetime of the single-use loginToken from the "Sign in with 2FA" page.
  token_ttl: {{q .Login.TokenTTL}}
  sso_provider_id: {{q .Login.SSOProviderID}}
  # Clients show it as "Continue with <name>".
  sso_provider_name: {{q .Login.SSOProviderName}}
  # Accept the authenticator code typed right after the password (on /login
  # and in the password step of account changes) from clients that know only
  # passwords (Element X by password, web clients' password dialogs). The
  # password as typed is tried first, so passwords ending in digits keep
  # working and a code is never counted or used up for a wrong password.
  password_with_code: {{.Login.PasswordWithCode}}
  # Leave m.login.password out of GET /login, so clients that can do SSO
  # show only "Continue with <sso_provider_name>".
  hide_password_flow: {{.Login.HidePasswordFlow}}
  # Clients the sign-in page may return to without asking, as URL prefixes,
  # e.g. "https://app.element.io/". Others need the user's confirmation.
  redirect_allowlist: {{q .Login.RedirectAllowlist}}
  # A correct password of a user with 2FA normally gets a 401 asking for the
  # code (clients that know the m.login.2fa stages). true instead refuses it
  # with 403 M_FORBIDDEN telling the user to choose "Sign in with 2FA".
  forbid_bare_password: {{.Login.ForbidBarePassword}}
  # Logins of one user waiting for their second factor at once; a new one
  # logs the oldest out (a password alone cannot pile devices up).
  max_held_per_user: {{.Login.MaxHeldPerUser}}
  # Let the UIA fallback page complete a held /login. Off by default: no
  # mainstream client opens it for /login, and a link to it lets someone who
  # has the password ask the victim for a code. When on, the page shows the
  # address and browser the sign-in came from.
  fallback_completes_login: {{.Login.FallbackCompletesLogin}}

# "Remember this browser" on the code step of the sign-in page and of the
# OAuth authorization page (one cookie for both): the browser gets a
# random cookie (only its SHA-256 is stored) and signs in without the code
# (the password is still checked) for this long. The account page lists and
# revokes them; turning 2FA off, an admin reset, a new authenticator and a
# password change through the gateway revoke them all. 0 turns it off.
remember_browser:
  ttl: {{q .RememberBrowser.TTL}}

# Tokens for bots and scripts: after the second factor, the account page makes
# a homeserver login from a name and the password (its device named after the
# token), shows the access token once and can revoke it (logged out upstream).
# Such a token needs no code: that is its point. 0 turns them off.
bot_tokens:
  max_per_user: {{.BotTokens.MaxPerUser}}

uia:
  # Lifetime of a user-interactive authentication session.
  session_ttl: {{q .UIA.SessionTTL}}

# How long a token's identity (GET /account/whoami) is cached.
whoami_cache_ttl: {{q .WhoAmITTL}}

# How long the homeserver's answer to GET /_matrix/client/versions without a
# token is served from memory (0s: not cached). Clients ask for it often.
versions_cache_ttl: {{q .VersionsCacheTTL}}

server:
  # Time for a client to send its request headers; for the body of a request
  # the gateway reads itself (login, UIA), and of one streamed through (uploads).
  read_header_timeout: {{q .Server.ReadHeaderTimeout}}
  body_timeout: {{q .Server.BodyTimeout}}
  passthrough_body_timeout: {{q .Server.PassThroughBodyTimeout}}
  # Idle keep-alive connections are closed after this.
  idle_timeout: {{q .Server.IdleTimeout}}
  max_header_bytes: {{.Server.MaxHeaderBytes}}
  # Reverse proxies whose X-Forwarded-For names the client (addresses or CIDR).
  trusted_proxies: {{q .Server.TrustedProxies}}

# Per client address, on POST /login and the sign-in, fallback and self-service
# forms: burst requests at once, one more every 'every'. burst 0 turns it off.
rate_limit:
  burst: {{.RateLimit.Burst}}
  every: {{q .RateLimit.Every}}

# Mail: codes by e-mail as a second factor, and notices to users when 2FA
# changes on their account (enabled, disabled, recovery codes regenerated or
# used, reset by an admin, locked out). Addresses are the users' verified
# e-mail addresses at the homeserver. No host: no mail at all.
smtp:
  host: {{q .SMTP.Host}}
  port: {{.SMTP.Port}}             # 0: 587 (starttls), 465 (tls) or 25 (none)
  tls: {{q .SMTP.TLS}}            # starttls (default), tls or none
  username: {{q .SMTP.Username}}
  password: {{q .SMTP.Password}}
  from: {{q .SMTP.From}}
  timeout: {{q .SMTP.Timeout}}
# Offer m.login.2fa.email (a 6-digit code, valid 10 minutes, one a minute)
# to users with a verified e-mail address.
email_codes: {{.EmailCodes}}
# Mail users when 2FA changes on their account.
notify: {{.Notify}}
# A homeserver admin's access token: the same notices also go to the user as
# Matrix server notices (Synapse, Dendrite: their server notices configured).
server_notices_token: {{q .ServerNoticesToken}}

# Prometheus metrics at http://<listen>/metrics (second-factor attempts,
# lockouts, held logins, UIA challenges, enrolment changes, homeserver call and
# request durations; no user IDs). Empty: off. Keep it on loopback or a
# private network.
metrics:
  listen: {{q .Metrics.Listen}}

# Pass the homeserver's admin APIs (/_synapse/admin, /_dendrite/admin) through.
# Off: refused with 403 — an admin token through them bypasses 2FA for anyone
# (e.g. Synapse's "login as user"); reach them on the homeserver's loopback port.
homeserver_admin_api: {{.AdminAPI}}

# The gateway's own admin API (/_matrix2fa/admin/v1/…) and page
# (/_matrix2fa/admin/): list users with 2FA, status and audit trail, reset,
# unlock, counts. Every reset and unlock is audited with the admin's name.
admin:
  enabled: {{.Admin.Enabled}}
  # Let the homeserver's own admins in (asked of the homeserver with the
  # caller's access token: Synapse's and Dendrite's admin APIs).
  homeserver_admins: {{.Admin.HomeserverAdmins}}
  # User IDs that administer every user, whatever the homeserver says.
  admins: {{q .Admin.Admins}}
  # Admins of some users only: patterns on user IDs where * matches anything,
  # e.g. [{"user": "@lead:example.org", "users": ["@team-*:example.org"]}].
  # A user listed here is scoped even when the homeserver says admin.
  scoped_admins: {{q .Admin.Scoped}}
  # SHA-256 (hex) of a static admin token for scripts (Authorization: Bearer
  # <token>); make one with: printf %s "$TOKEN" | sha256sum. Empty: none.
  token_sha256: {{q .Admin.TokenSHA256}}

# The provider API for other login paths (/_matrix2fa/provider/v1/…: is 2FA
# on for a user, verify a code), authorised by a shared secret (Authorization:
# Bearer <secret>). Set the secret's SHA-256 (hex): printf %s "$SECRET" |
# sha256sum. Empty: off.
provider:
  secret_sha256: {{q .Provider.SecretSHA256}}

# The Matrix OAuth 2.0 API (spec v1.15+; Element X and every OAuth-native
# client): the gateway is the homeserver's authorization server, with the
# second factor on its own page. Needs public_base_url (the issuer).
oauth:
  enabled: {{.OAuth.Enabled}}
  # Development only: let web clients use http on loopback (client_uri and
  # redirect URIs on 127.0.0.1, [::1] or localhost).
  dev_http_loopback: {{.OAuth.DevHTTPLoopback}}
  code_ttl: {{.OAuth.CodeTTL}}        # lifetime of an authorization code
  sign_in_ttl: {{.OAuth.SignInTTL}}     # how long the page waits for the code
  # Ask the homeserver for its own refresh token when signing a client in:
  # Synapse with refreshable_access_token_lifetime then hands out expiring
  # tokens, which the client's refresh renews at the homeserver. Dendrite has
  # none and ignores the request. Off: the homeserver's token never expires.
  homeserver_refresh_tokens: {{.OAuth.HomeserverRefreshTokens}}

# The enforcement policy: whom two-factor authentication is required of.
# After the grace period, a user under it without 2FA is refused (403
# M_FORBIDDEN naming <public_base_url>/_matrix2fa/) on /login and on every
# request with an older token, except what enrolling needs; the sign-in and
# OAuth pages walk them through enrolment instead (within the grace period
# they, and the account page, say how many days are left); disabling 2FA is
# refused while the policy applies (an admin reset still works). Check who is
# affected before turning it on: matrix-2fa admin status USER.
policy:
  # none (the default: nobody is required), all (everyone but the exempt),
  # or selected (users, patterns and homeserver_admins below).
  enforce: {{q .Policy.Enforce}}
  users: {{q .Policy.Users}}         # user IDs, e.g. ["@alice:example.org"]
  patterns: {{q .Policy.Patterns}}      # * matches anything, e.g. ["@ops-*:example.org"]
  # The homeserver's admins (Synapse's and Dendrite's admin APIs, asked with
  # the user's own token; where the homeserver cannot tell, list them in users).
  homeserver_admins: {{.Policy.HomeserverAdmins}}
  # Never under the policy (bots, service accounts): IDs or patterns; they
  # win over every selection.
  exempt: {{q .Policy.Exempt}}
  # How long a user may go on without 2FA, from the first time the gateway
  # sees them under the policy (default a week; 0: at once).
  grace: {{.Policy.Grace}}
# Trusted clients (Rocket.Chat's model): after a user completes a 2FA stage
# with an access token, more protected operations with the same token from
# the same client (user agent and address, behind server.trusted_proxies the
# forwarded one) skip the 2FA stage for this window; the homeserver's own
# stages (the password) are still asked. 0 turns it off. The trust ends with
# the window, on logout of the token, and when 2FA is disabled or reset.
trusted_clients:
  window: {{.TrustedClients.Window}}
  # Operations that ask for the second factor even of a trusted client, among
  # delete_device, delete_devices, change_password, deactivate, add_3pid,
  # cross_signing_reset, login_token, enrol_2fa, disable_2fa,
  # regenerate_recovery_codes. The default keeps those that take over or
  # strip an account or its second factor (enrol_2fa replaces the
  # authenticator), and login_token (it makes a new login).
  always_ask: {{q .TrustedClients.AlwaysAsk}}

log:
  level: {{q .Log.Level}}    # trace, debug, info, warn, error
  format: {{q .Log.Format}}   # text or json
`))

// Template renders the commented configuration file for c.
func Template(c Config) []byte {
	var b bytes.Buffer
	if err := fileTemplate.Execute(&b, c); err != nil {
		panic(err) // the template and Config are fixed at compile time
	}
	return b.Bytes()
}
