package storage

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable wraps an error of an engine that cannot reach its database
// (connection refused or lost, the server shutting down): the request may
// succeed later. A connection lost under a statement leaves its outcome
// unknown; security state changes then err on the safe side (a code
// consumed, a failure counted).
var ErrUnavailable = errors.New("storage: database unavailable")

// ErrNotFound is returned when the requested record does not exist (or, for a
// pending enrolment, has expired or changed).
var ErrNotFound = errors.New("storage: not found")

// TOTP is a user's enabled TOTP authenticator. Secret is ciphertext; the store
// never sees a secret in clear.
type TOTP struct {
	UserID    string
	Secret    []byte
	KeyID     string
	Algorithm string
	Digits    int
	Period    int
	// LastStep is the newest time step ever accepted for this secret; only a
	// strictly newer step may be accepted next (RFC 6238 §5.2).
	LastStep  int64
	EnabledAt time.Time
}

// Pending is an enrolment that has been started but not yet confirmed with a code.
type Pending struct {
	UserID    string
	Secret    []byte
	KeyID     string
	Algorithm string
	Digits    int
	Period    int
	CreatedAt time.Time
	ExpiresAt time.Time
}

// RecoverySet is a user's current set of recovery codes: one random salt for the
// set and one slow hash per code.
type RecoverySet struct {
	UserID      string
	SetID       string
	Salt        []byte
	GeneratedAt time.Time
	Codes       []RecoveryCode
}

// RecoveryCode is one hashed recovery code; UsedAt is zero while it is unused.
type RecoveryCode struct {
	Index  int
	Hash   []byte
	UsedAt time.Time
}

// Remaining counts the unused codes of the set.
func (s RecoverySet) Remaining() int {
	n := 0
	for _, c := range s.Codes {
		if c.UsedAt.IsZero() {
			n++
		}
	}
	return n
}

// AuditEvent is one security-relevant event in a user's 2FA history.
type AuditEvent struct {
	ID     int64
	UserID string
	Kind   string
	Detail string
	At     time.Time
}

// Audit event kinds.
const (
	AuditEnrol        = "enrol"
	AuditConfirm      = "confirm"
	AuditDisable      = "disable"
	AuditRegenerate   = "regenerate"
	AuditRecoveryUsed = "recovery_used"
	AuditReplay       = "replay"
	AuditLockout      = "lockout"
	AuditAdminReset   = "admin_reset"
	AuditUnlock       = "unlock"
	AuditKeyRotated   = "key_rotated"
	// AuditEmailCodeSent: an e-mail code was sent.
	AuditEmailCodeSent = "email_code_sent"
	// AuditRefused: a request was refused because it named another user or
	// could be read two ways (forward only what was checked).
	AuditRefused = "refused"
	// AuditBotTokenCreated and AuditBotTokenRevoked: a token for bots and
	// scripts was made or revoked on the account page (Detail: its name and
	// device ID).
	AuditBotTokenCreated = "bot_token_created"
	AuditBotTokenRevoked = "bot_token_revoked"
	// AuditRegistered: a user was registered at the homeserver on the OAuth
	// authorization page (prompt=create; Detail: the client).
	AuditRegistered = "registered"
)

// AuditQuery selects audit events for QueryAudit; zero fields select all.
type AuditQuery struct {
	UserID string
	Kind   string
	// Since selects events at or after it.
	Since time.Time
	// Before selects events whose ID is below it (the cursor of the next
	// page: the ID of the last event of this one).
	Before int64
	Limit  int
}

// User filters of UserQuery.
const (
	UsersAll     = "all"     // with an authenticator, or locked
	UsersEnabled = "enabled" // with an authenticator
	UsersLocked  = "locked"  // locked out at UserQuery.Now
)

// UserQuery selects users for ListUsers.
type UserQuery struct {
	// Status is UsersAll ("" too), UsersEnabled or UsersLocked.
	Status string
	// After selects user IDs greater than it (the cursor of the next page).
	After string
	// UserID, when set, selects that user only.
	UserID string
	Limit  int
	// Now is when "locked" is judged.
	Now time.Time
}

// UserRow is one user of ListUsers.
type UserRow struct {
	UserID    string
	Enabled   bool
	EnabledAt time.Time
	// LockedUntil is when the user's back-off ends; zero when the user is
	// not locked at the query's Now.
	LockedUntil time.Time
}

// UserCounts are CountUsers' numbers.
type UserCounts struct {
	Enabled int
	Locked  int
	Pending int
}

// Attempt is the outcome of ReserveAttempt.
type Attempt struct {
	// Allowed says the attempt was recorded and may be checked.
	Allowed bool
	// Failures is how many consecutive failures (this attempt included) are
	// recorded since the last success, when Allowed.
	Failures int
	// RetryAt is when an attempt will next be allowed, when not Allowed.
	RetryAt time.Time
}

// TOTPUse is one check of a TOTP code, recorded by Store.UseTOTP. The code
// was compared with the user's secret before (the store never sees a secret
// in clear): Matched says it was the code of one of the accepted steps, Step
// which.
type TOTPUse struct {
	UserID string
	// Now, Window and Limit are the lockout rules, as for ReserveAttempt.
	Now    time.Time
	Window time.Duration
	Limit  int
	// Matched and Step: the code is the one of time step Step.
	Matched bool
	Step    int64
	// Session, when its ID is set, is the UIA stage the code completes.
	Session SessionStep
	// Audit, when set, is called inside the transaction with its outcome
	// and returns the audit events to append in it (a replay, a lockout).
	// It must return quickly and do no I/O.
	Audit func(TOTPOutcome) []AuditEvent
}

// SessionStep is the change a correct code makes to a UIA session.
type SessionStep struct {
	ID string
	// Before is the session's completed stages as the caller loaded them;
	// the change happens only if they are still exactly these
	// (compare-and-swap, as CompleteStage).
	Before []string
	// Stage is appended to the completed stages.
	Stage string
	// Take says the stage completes a flow: the session is deleted and
	// returned instead (as TakeSession), so only one request ever gets it.
	Take bool
}

// TOTPOutcome is what UseTOTP did.
type TOTPOutcome struct {
	// Attempt is the lockout decision, as ReserveAttempt's: when not Allowed
	// nothing was recorded and the code did not count. Failures includes
	// this attempt when it failed.
	Attempt
	// Accepted: the code's step was newer than the last accepted one and is
	// now the last accepted step; the user's failures were forgotten.
	Accepted bool
	// Replayed: the code matched, but its step was not newer than the last
	// accepted one; it counted as a failure.
	Replayed bool
	// SessionDone: Accepted, and the session step happened (false when the
	// session was gone or its completed stages had changed).
	SessionDone bool
	// Session is the taken session, when SessionStep.Take and SessionDone.
	Session UIASession
}

// RewrapFunc re-encrypts one secret: it receives the owner, the ciphertext and
// its key ID and returns the new ciphertext and key ID.
type RewrapFunc func(userID string, secret []byte, keyID string) ([]byte, string, error)

// Store holds every piece of persistent 2FA state. Each method owns its
// transaction; security-critical changes are single conditional statements whose
// effect is reported to the caller. Implementations must pass storagetest.Run.
type Store interface {
	// TOTP returns the user's enabled authenticator, or ErrNotFound.
	TOTP(ctx context.Context, userID string) (TOTP, error)
	// HasTOTPFold reports whether some user whose ID equals userID up to the
	// case of ASCII letters has an enabled authenticator.
	HasTOTPFold(ctx context.Context, userID string) (bool, error)
	// AdvanceStep records step as the last accepted one if and only if it is
	// newer than the stored one; it reports whether it did. ErrNotFound when the
	// user has no authenticator.
	AdvanceStep(ctx context.Context, userID string, step int64) (bool, error)

	// Pending returns the user's pending enrolment (expired ones included), or ErrNotFound.
	Pending(ctx context.Context, userID string) (Pending, error)
	// PutPending creates or replaces the user's pending enrolment.
	PutPending(ctx context.Context, p Pending) error
	// ConfirmEnrolment turns the pending enrolment p into the user's
	// authenticator with lastStep as its last accepted step, replaces the whole
	// recovery set with set and deletes the pending row, in one transaction. It
	// returns ErrNotFound when the stored pending enrolment is gone, expired at
	// now, or no longer holds p's secret.
	ConfirmEnrolment(ctx context.Context, p Pending, lastStep int64, now time.Time, set RecoverySet) error

	// RecoverySet returns the user's recovery codes, or ErrNotFound.
	RecoverySet(ctx context.Context, userID string) (RecoverySet, error)
	// ReplaceRecoverySet replaces the user's whole recovery set in one
	// transaction; ErrNotFound when the user has no enabled authenticator.
	ReplaceRecoverySet(ctx context.Context, set RecoverySet) error
	// ConsumeRecoveryCode marks code index of set setID used at now if it is
	// still unused and the set is still current; it reports whether it did.
	ConsumeRecoveryCode(ctx context.Context, userID, setID string, index int, now time.Time) (bool, error)

	// DeleteAll removes the user's authenticator, pending enrolment, recovery
	// codes and trusted clients in one transaction and reports whether an
	// authenticator, enrolment or code existed.
	DeleteAll(ctx context.Context, userID string) (bool, error)

	// ReserveAttempt atomically records one verification attempt as a failure,
	// unless the user is locked, and reports the consecutive failures since
	// the last success. The user is locked while limit failures lie within
	// window before now, and, with a growing back-off, after every round of
	// limit consecutive failures: round k locks for window × 2^(k-1) from its
	// last failure (15 min, 30 min, 1 h, … for the defaults), so the guesses
	// someone can make without ever succeeding stay far below NIST's cap of
	// 100. When locked it records nothing and reports Allowed=false and the
	// time at which an attempt will be allowed again. A successful attempt is
	// then wiped with ClearFailures.
	ReserveAttempt(ctx context.Context, userID string, now time.Time, window time.Duration, limit int) (Attempt, error)
	// ClearFailures forgets the user's recorded failures and back-off.
	ClearFailures(ctx context.Context, userID string) error
	// UseTOTP records one TOTP check u in one transaction: the lockout
	// decision of ReserveAttempt (when locked, nothing is recorded, whatever
	// the code); for a matched code whose step is newer than the stored
	// one, the step advance (a conditional update, so a code works at most
	// once even under concurrent requests), the forgetting of the user's
	// failures and u.Session's step; otherwise one failure counted as
	// ReserveAttempt counts it; and the audit events of u.Audit. Either all
	// of it is stored or none. ErrNotFound when a matched code finds the
	// user without an authenticator (the failure is counted then too).
	UseTOTP(ctx context.Context, u TOTPUse) (TOTPOutcome, error)

	// AddAudit appends an audit event.
	AddAudit(ctx context.Context, ev AuditEvent) error
	// AuditEvents returns the user's newest events first, at most limit.
	AuditEvents(ctx context.Context, userID string, limit int) ([]AuditEvent, error)
	// QueryAudit returns the events q selects, newest first, at most q.Limit.
	QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEvent, error)

	// ListUsers returns the users q selects (with an authenticator, locked at
	// q.Now, or either) in ascending byte order of user ID, at most q.Limit.
	ListUsers(ctx context.Context, q UserQuery) ([]UserRow, error)
	// CountUsers counts the users with an authenticator, those locked at now
	// and the pending enrolments live at now.
	CountUsers(ctx context.Context, now time.Time) (UserCounts, error)

	// Meta returns a store-wide value, or ErrNotFound.
	Meta(ctx context.Context, key string) ([]byte, error)
	// PutMeta sets a store-wide value.
	PutMeta(ctx context.Context, key string, value []byte) error
	// Rewrap re-encrypts every stored secret (enabled and pending) with fn and
	// sets the meta key to value, all in one transaction; it returns how many
	// secrets it rewrote. Any error from fn rolls everything back.
	Rewrap(ctx context.Context, fn RewrapFunc, metaKey string, metaValue []byte) (int, error)
	// KeyIDs returns the distinct key IDs of every stored secret.
	KeyIDs(ctx context.Context) ([]string, error)

	SessionStore
	EmailStore
	OAuthStore
	PolicyStore
	RememberStore
	TrustStore

	// Close releases the store.
	Close() error
}

// ErrConflict is returned when a record to be created already exists.
var ErrConflict = errors.New("storage: already exists")

// ErrFull is returned when a record would pass a per-user limit.
var ErrFull = errors.New("storage: limit reached")

// SessionKind says what a session is; each caller loads only the kinds it may
// touch.
type SessionKind string

// Session kinds.
const (
	// KindUIA: a user-interactive authentication session bound to one request.
	KindUIA SessionKind = "uia"
	// KindHeldLogin: a /login whose homeserver answer waits for the second factor.
	KindHeldLogin SessionKind = "held_login"
	// KindSignIn: a sign-in page login waiting for its code.
	KindSignIn SessionKind = "signin"
	// KindLoginToken: a sign-in page login waiting to be redeemed with a login token.
	KindLoginToken SessionKind = "login_token"
	// KindWeb: a self-service page session.
	KindWeb SessionKind = "web"
	// KindAdminWeb: an admin page session.
	KindAdminWeb SessionKind = "admin_web"
	// KindOAuthSignIn: an OAuth authorization page sign-in waiting for its
	// code or, with the one flow m.matrix2fa.enrol, for enrolment under the
	// enforcement policy (Data: the sealed password, for the login after).
	KindOAuthSignIn SessionKind = "oauth_signin"
)

// UIASession is one session: a UIA session bound to one request (method,
// path, user), or another kind (Kind). Data is opaque to the store (the
// gateway keeps an encrypted held login response there, for example).
type UIASession struct {
	ID        string
	Kind      SessionKind
	UserID    string
	Method    string
	Path      string
	Flows     [][]string
	Params    []byte // JSON object
	Completed []string
	Data      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// KindOr returns s.Kind, or KindUIA when it is empty.
func (s UIASession) KindOr() SessionKind {
	if s.Kind == "" {
		return KindUIA
	}
	return s.Kind
}

// SessionStore holds UIA sessions. It is part of Store; it is declared on its
// own so the uia package can depend on just this.
type SessionStore interface {
	// CreateSession stores a new session (Kind "" is KindUIA); ErrConflict
	// if the ID exists.
	CreateSession(ctx context.Context, s UIASession) error
	// Session returns a session (expired ones too), or ErrNotFound.
	Session(ctx context.Context, id string) (UIASession, error)
	// CompleteStage appends stage to the session's completed stages if and only
	// if they are still exactly before (compare-and-swap); it reports whether it did.
	CompleteStage(ctx context.Context, id string, before []string, stage string) (bool, error)
	// SetSessionData replaces the session's opaque data; ErrNotFound if gone.
	SetSessionData(ctx context.Context, id string, data []byte) error
	// TakeSession deletes the session and returns it, atomically, so only one
	// caller ever gets it; ErrNotFound if it is already gone.
	TakeSession(ctx context.Context, id string) (UIASession, error)
	// UserSessions returns userID's sessions of kind that are live at now,
	// oldest first (then in creation order).
	UserSessions(ctx context.Context, userID string, kind SessionKind, now time.Time) ([]UIASession, error)
	// ExpiredSessions returns up to limit sessions that expired before now.
	ExpiredSessions(ctx context.Context, now time.Time, limit int) ([]UIASession, error)
}

// EmailCode is a one-time code sent by e-mail; only a MAC of it is kept.
type EmailCode struct {
	UserID    string
	Hash      []byte
	SentAt    time.Time
	ExpiresAt time.Time
}

// EmailStore holds e-mail codes and the addresses they go to. It is part of
// Store.
type EmailStore interface {
	// PutEmailCode stores c as the user's one pending e-mail code, replacing
	// an older one, unless the older one was sent less than minGap before
	// c.SentAt; it reports whether it stored c.
	PutEmailCode(ctx context.Context, c EmailCode, minGap time.Duration) (bool, error)
	// ConsumeEmailCode deletes the user's pending code if its hash is hash
	// and it is unexpired at now, in one statement; it reports whether it did.
	ConsumeEmailCode(ctx context.Context, userID string, hash []byte, now time.Time) (bool, error)
	// PutUserEmails records the user's verified e-mail addresses (none
	// forgets them).
	PutUserEmails(ctx context.Context, userID string, addresses []string, at time.Time) error
	// UserEmails returns the user's recorded addresses (none when unknown).
	UserEmails(ctx context.Context, userID string) ([]string, error)
}

// OAuthClient is a client registered with the OAuth 2.0 API (RFC 7591).
type OAuthClient struct {
	ID string
	// Metadata is the client's metadata as the gateway accepted it (JSON).
	Metadata  []byte
	CreatedAt time.Time
}

// OAuthCode is an authorization code, kept only as its hash, and the
// homeserver login it stands for (Login: sealed, opaque to the store).
type OAuthCode struct {
	Hash        []byte
	ClientID    string
	RedirectURI string
	// Challenge is the PKCE S256 code challenge.
	Challenge string
	Scope     string
	UserID    string
	DeviceID  string
	Login     []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// OAuthGrant is a live OAuth session: the homeserver login (Login: sealed)
// behind a rotating refresh token, kept only as its hash; AccessHash is the
// hash of the homeserver access token (to revoke by it).
type OAuthGrant struct {
	ID          string
	ClientID    string
	UserID      string
	DeviceID    string
	Scope       string
	RefreshHash []byte
	AccessHash  []byte
	Login       []byte
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// OAuthStore holds OAuth clients, authorization codes and grants. It is part
// of Store.
type OAuthStore interface {
	// PutOAuthClient stores a new client; ErrConflict if its ID exists.
	PutOAuthClient(ctx context.Context, c OAuthClient) error
	// OAuthClient returns a client, or ErrNotFound.
	OAuthClient(ctx context.Context, id string) (OAuthClient, error)
	// PutOAuthCode stores a new authorization code; ErrConflict if its hash exists.
	PutOAuthCode(ctx context.Context, c OAuthCode) error
	// TakeOAuthCode deletes the code with hash and returns it, atomically, so
	// only one caller ever gets it (expired ones too); ErrNotFound if gone.
	TakeOAuthCode(ctx context.Context, hash []byte) (OAuthCode, error)
	// ExpiredOAuthCodes returns up to limit codes that expired before now.
	ExpiredOAuthCodes(ctx context.Context, now time.Time, limit int) ([]OAuthCode, error)
	// PutOAuthGrant stores a new grant; ErrConflict if its ID exists.
	PutOAuthGrant(ctx context.Context, g OAuthGrant) error
	// OAuthGrantByRefresh returns the grant whose current refresh token has
	// hash, or ErrNotFound.
	OAuthGrantByRefresh(ctx context.Context, hash []byte) (OAuthGrant, error)
	// OAuthGrantByAccess returns the grant whose access token has hash, or
	// ErrNotFound.
	OAuthGrantByAccess(ctx context.Context, hash []byte) (OAuthGrant, error)
	// RotateOAuthRefresh replaces grant id's refresh token hash old with
	// next in one conditional statement; it reports whether it did (false:
	// the grant is gone or old was already rotated).
	RotateOAuthRefresh(ctx context.Context, id string, old, next []byte, now time.Time) (bool, error)
	// SetOAuthGrantLogin replaces grant id's homeserver login (sealed) and
	// access token hash, if its refresh token hash is still refresh (the
	// caller's own rotation); false when it is not (or the grant is gone).
	SetOAuthGrantLogin(ctx context.Context, id string, refresh, access, login []byte, now time.Time) (bool, error)
	// TakeOAuthGrant deletes grant id and returns it, atomically; ErrNotFound
	// if it is already gone.
	TakeOAuthGrant(ctx context.Context, id string) (OAuthGrant, error)
}

// RememberedBrowser is a browser in which a user chose "remember this
// browser" after a correct code: only the SHA-256 of its cookie is kept, with
// where and when it was made.
type RememberedBrowser struct {
	Hash      []byte
	UserID    string
	UserAgent string
	Addr      string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// BotToken is a homeserver login a user made for a bot or script on the
// account page: the SHA-256 of its access token and the token itself sealed
// for the user (Secret, KeyID), so that revoking it can log it out.
type BotToken struct {
	ID        string
	UserID    string
	Name      string
	DeviceID  string
	Hash      []byte
	Secret    []byte
	KeyID     string
	CreatedAt time.Time
}

// RememberStore holds remembered browsers and bot tokens. It is part of
// Store. Bot tokens' sealed secrets are re-encrypted by Rewrap and counted
// by KeyIDs with the TOTP secrets.
type RememberStore interface {
	// PutBrowser stores a remembered browser (and forgets the user's
	// expired ones); ErrConflict if its hash exists.
	PutBrowser(ctx context.Context, b RememberedBrowser) error
	// Browser returns the remembered browser whose cookie has hash if it
	// belongs to userID and is live at now, or ErrNotFound.
	Browser(ctx context.Context, userID string, hash []byte, now time.Time) (RememberedBrowser, error)
	// Browsers returns userID's browsers live at now, newest first.
	Browsers(ctx context.Context, userID string, now time.Time) ([]RememberedBrowser, error)
	// DeleteBrowser forgets userID's browser with hash; it reports whether
	// there was one.
	DeleteBrowser(ctx context.Context, userID string, hash []byte) (bool, error)
	// DeleteBrowsers forgets every browser of userID and says how many.
	DeleteBrowsers(ctx context.Context, userID string) (int, error)

	// PutBotToken stores a new bot token unless its user already holds
	// limit of them (ErrFull; limit 0: no limit), checked and inserted
	// atomically; ErrConflict if its ID exists.
	PutBotToken(ctx context.Context, t BotToken, limit int) error
	// BotTokens returns userID's bot tokens, oldest first.
	BotTokens(ctx context.Context, userID string) ([]BotToken, error)
	// TakeBotToken deletes userID's bot token id and returns it, atomically;
	// ErrNotFound if there is none.
	TakeBotToken(ctx context.Context, userID, id string) (BotToken, error)
}

// TrustedClient is a client (one access token from one user agent and
// address) that may skip the 2FA stage until Until. Only keyed hashes of the
// token and of the client are kept.
type TrustedClient struct {
	TokenHash  []byte
	ClientHash []byte
	UserID     string
	Until      time.Time
}

// TrustStore holds trusted clients. It is part of Store.
type TrustStore interface {
	// PutTrustedClient records c, replacing the trust of the same token and
	// client, and drops the user's trusts that ended before now.
	PutTrustedClient(ctx context.Context, c TrustedClient, now time.Time) error
	// TrustedClientUntil returns when the trust of tokenHash from clientHash
	// for userID ends, or ErrNotFound when there is none live at now.
	TrustedClientUntil(ctx context.Context, userID string, tokenHash, clientHash []byte, now time.Time) (time.Time, error)
	// ForgetTrustedToken deletes every trust of tokenHash and reports how many.
	ForgetTrustedToken(ctx context.Context, tokenHash []byte) (int, error)
}
