package account

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Config is the 2FA policy. Zero fields take the defaults of DefaultConfig.
type Config struct {
	Issuer        string        `yaml:"issuer"`
	Algorithm     string        `yaml:"algorithm"`
	Digits        int           `yaml:"digits"`
	Period        int           `yaml:"period"`
	Skew          int           `yaml:"skew"`
	SecretSize    int           `yaml:"secret_size"`
	EnrolmentTTL  time.Duration `yaml:"enrolment_ttl"`
	RecoveryCodes int           `yaml:"recovery_codes"`
	LockoutLimit  int           `yaml:"lockout_limit"`
	LockoutWindow time.Duration `yaml:"lockout_window"`
	Argon2        Argon2Params  `yaml:"argon2"`
	HashesAtOnce  int           `yaml:"hashes_at_once"`
}

// DefaultConfig returns the defaults: SHA1, 6 digits, 30 s, ±1 step, 20-byte
// secrets, 10-minute enrolment, 10 recovery codes, 5 failures in 15 minutes.
func DefaultConfig() Config {
	return Config{
		Issuer: "Matrix", Algorithm: "SHA1", Digits: 6, Period: 30, Skew: 1, SecretSize: 20,
		EnrolmentTTL: 10 * time.Minute, RecoveryCodes: 10,
		LockoutLimit: 5, LockoutWindow: 15 * time.Minute,
		Argon2: DefaultArgon2, HashesAtOnce: 2,
	}
}

// WithDefaults fills zero fields from DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Issuer == "" {
		c.Issuer = d.Issuer
	}
	if c.Algorithm == "" {
		c.Algorithm = d.Algorithm
	}
	c.Algorithm = strings.ToUpper(c.Algorithm)
	if c.Digits == 0 {
		c.Digits = d.Digits
	}
	if c.Period == 0 {
		c.Period = d.Period
	}
	if c.SecretSize == 0 {
		c.SecretSize = d.SecretSize
	}
	if c.EnrolmentTTL == 0 {
		c.EnrolmentTTL = d.EnrolmentTTL
	}
	if c.RecoveryCodes == 0 {
		c.RecoveryCodes = d.RecoveryCodes
	}
	if c.LockoutLimit == 0 {
		c.LockoutLimit = d.LockoutLimit
	}
	if c.LockoutWindow == 0 {
		c.LockoutWindow = d.LockoutWindow
	}
	if c.Argon2 == (Argon2Params{}) {
		c.Argon2 = d.Argon2
	}
	if c.HashesAtOnce == 0 {
		c.HashesAtOnce = d.HashesAtOnce
	}
	return c
}

// Validate returns every problem with c (after defaults) at once.
func (c Config) Validate() []error {
	var errs []error
	if err := c.params().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Skew < 0 || c.Skew > 3 {
		errs = append(errs, fmt.Errorf("skew must be between 0 and 3 steps, not %d", c.Skew))
	}
	if c.SecretSize < 20 || c.SecretSize > 64 {
		errs = append(errs, fmt.Errorf("secret_size must be between 20 and 64 bytes, not %d", c.SecretSize))
	}
	if c.EnrolmentTTL < time.Minute {
		errs = append(errs, fmt.Errorf("enrolment_ttl must be at least 1m, not %s", c.EnrolmentTTL))
	}
	if c.RecoveryCodes < 1 || c.RecoveryCodes > 32 {
		errs = append(errs, fmt.Errorf("recovery_codes must be between 1 and 32, not %d", c.RecoveryCodes))
	}
	if c.LockoutLimit < 1 || c.LockoutLimit > 100 {
		errs = append(errs, fmt.Errorf("lockout_limit must be between 1 and 100 (NIST 800-63B), not %d", c.LockoutLimit))
	}
	if c.LockoutWindow < time.Second {
		errs = append(errs, fmt.Errorf("lockout_window must be at least 1s, not %s", c.LockoutWindow))
	}
	if c.Argon2.Time < 1 || c.Argon2.MemoryKiB < 8 || c.Argon2.Threads < 1 {
		errs = append(errs, fmt.Errorf("argon2 parameters must all be positive (memory_kib at least 8)"))
	}
	if c.HashesAtOnce < 1 {
		errs = append(errs, fmt.Errorf("hashes_at_once must be at least 1, not %d", c.HashesAtOnce))
	}
	if strings.Contains(c.Issuer, ":") {
		errs = append(errs, fmt.Errorf("issuer must not contain ':'"))
	}
	return errs
}

func (c Config) params() Params {
	return Params{Algorithm: c.Algorithm, Digits: c.Digits, Period: c.Period}
}

// Service is the 2FA domain over a Store and a SecretBox.
type Service struct {
	obs   Observer
	store storage.Store
	box   *SecretBox
	cfg   Config
	now   func() time.Time
	rand  io.Reader
	log   logrus.FieldLogger
	hash  chan struct{} // bounds concurrent argon2id hashes
}

// Option adjusts a Service.
type Option func(*Service)

// WithClock injects the clock (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithRand injects the randomness source (tests).
func WithRand(r io.Reader) Option { return func(s *Service) { s.rand = r } }

// Observer hears what happens to accounts, for metrics and notifications.
// Its methods must return quickly and never fail the caller.
type Observer interface {
	// Attempt is one second-factor check: method "totp" or "recovery",
	// result "success", "invalid", "replay" or "locked".
	Attempt(method, result string)
	// Event is one audit event of userID (a storage.Audit* kind).
	Event(userID, kind, detail string)
}

// WithObserver sets the observer (none by default).
func WithObserver(o Observer) Option { return func(s *Service) { s.obs = o } }

// Observe sets the observer of a service built without one; call it before
// the service is used.
func (s *Service) Observe(o Observer) { s.obs = o }

// WithLogger sets the logger.
func WithLogger(l logrus.FieldLogger) Option { return func(s *Service) { s.log = l } }

// NewService returns a Service. cfg is completed with defaults; it returns an
// error listing every invalid setting.
func NewService(store storage.Store, box *SecretBox, cfg Config, opts ...Option) (*Service, error) {
	cfg = cfg.WithDefaults()
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("account: invalid configuration: %w", errors.Join(errs...))
	}
	s := &Service{store: store, box: box, cfg: cfg, now: time.Now, rand: rand.Reader, log: logrus.StandardLogger()}
	for _, o := range opts {
		o(s)
	}
	s.hash = make(chan struct{}, cfg.HashesAtOnce)
	return s, nil
}

// Config returns the effective configuration.
func (s *Service) Config() Config { return s.cfg }

// RecoveryCodes is how many recovery codes a set has.
func (s *Service) RecoveryCodes() int { return s.cfg.RecoveryCodes }

// Params returns the parameters new enrolments get.
func (s *Service) Params() Params { return s.cfg.params() }

// Enrolment is a started, unconfirmed enrolment as shown to the user once.
type Enrolment struct {
	Secret    string // base32, for manual entry
	URI       string // otpauth://totp/…
	QRPNG     []byte
	QRSVG     string
	Params    Params
	ExpiresAt time.Time
}

// Enrol starts (or restarts) enrolment: a new random secret is stored
// encrypted as pending. An enabled authenticator keeps working until Confirm.
func (s *Service) Enrol(ctx context.Context, userID string) (Enrolment, error) {
	now := s.now()
	secret := make([]byte, s.cfg.SecretSize)
	if _, err := io.ReadFull(s.rand, secret); err != nil {
		return Enrolment{}, err
	}
	defer clear(secret)
	p := s.Params()
	alg, _ := otpAlgorithm(p.Algorithm)
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: s.cfg.Issuer, AccountName: userID, Period: uint(p.Period), Secret: secret,
		Digits: otp.Digits(p.Digits), Algorithm: alg,
	})
	if err != nil {
		return Enrolment{}, fmt.Errorf("account: otpauth URI: %w", err)
	}
	m, err := QRMatrix(key.URL())
	if err != nil {
		return Enrolment{}, err
	}
	pngBytes, err := QRPNG(m)
	if err != nil {
		return Enrolment{}, err
	}
	sealed, err := s.box.Seal(userID, secret)
	if err != nil {
		return Enrolment{}, err
	}
	expires := now.Add(s.cfg.EnrolmentTTL)
	if err := s.store.PutPending(ctx, storage.Pending{
		UserID: userID, Secret: sealed, KeyID: s.box.KeyID(), Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period,
		CreatedAt: now, ExpiresAt: expires,
	}); err != nil {
		return Enrolment{}, err
	}
	s.audit(ctx, userID, storage.AuditEnrol, "")
	return Enrolment{Secret: EncodeSecret(secret), URI: key.URL(), QRPNG: pngBytes, QRSVG: QRSVG(m), Params: p, ExpiresAt: expires}, nil
}

// Confirm checks code against the pending secret; on success the secret
// becomes the user's authenticator (the code's step its last accepted step),
// a new recovery set replaces every older code, and the new codes are returned.
// Errors: ErrMissingCode, ErrNoPending, ErrInvalidCode, *LockedError.
func (s *Service) Confirm(ctx context.Context, userID, code string) ([]string, error) {
	code = strings.TrimSpace(code)
	if code == "" {
		return nil, ErrMissingCode
	}
	now := s.now()
	p, err := s.store.Pending(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && !now.Before(p.ExpiresAt)) {
		return nil, ErrNoPending
	}
	if err != nil {
		return nil, err
	}
	var codes []string
	err = s.attempt(ctx, userID, now, func() error {
		secret, err := s.box.Open(userID, p.KeyID, p.Secret)
		if err != nil {
			return err
		}
		defer clear(secret)
		params := Params{Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period}
		step, ok, err := matchStep(secret, code, now, params, s.cfg.Skew)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: wrong confirmation code", ErrInvalidCode)
		}
		set, plain, err := s.newRecoverySet(userID, now)
		if err != nil {
			return err
		}
		if err := s.store.ConfirmEnrolment(ctx, p, step, now, set); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return ErrNoPending // replaced or confirmed concurrently
			}
			return err
		}
		codes = plain
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.audit(ctx, userID, storage.AuditConfirm, "")
	if err := s.ForgetBrowsers(ctx, userID, "new authenticator"); err != nil {
		// The authenticator is on: only the remembered browsers are left.
		s.log.WithError(err).WithField("user_id", userID).Error("forgetting remembered browsers")
	}
	return codes, nil
}

// VerifyRecovery checks and consumes one recovery code for userID. Errors:
// ErrMissingCode, ErrNotEnabled, ErrInvalidCode (wrong or used), *LockedError.
func (s *Service) VerifyRecovery(ctx context.Context, userID, code string) (err error) {
	defer func() { s.observe("recovery", err) }()
	if strings.TrimSpace(code) == "" {
		return ErrMissingCode
	}
	if _, err := s.store.TOTP(ctx, userID); errors.Is(err, storage.ErrNotFound) {
		return ErrNotEnabled
	} else if err != nil {
		return err
	}
	now := s.now()
	remaining := 0
	err = s.attempt(ctx, userID, now, func() error {
		norm, ok := normalizeRecovery(code)
		if !ok {
			return fmt.Errorf("%w: not a recovery code", ErrInvalidCode)
		}
		set, err := s.store.RecoverySet(ctx, userID)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: no recovery codes", ErrInvalidCode)
		}
		if err != nil {
			return err
		}
		h, err := s.slowHash(ctx, norm, set.Salt)
		if err != nil {
			return err
		}
		hashes := make([][]byte, len(set.Codes))
		for i, c := range set.Codes {
			hashes[i] = c.Hash
		}
		i := findHash(h, hashes)
		if i < 0 {
			return fmt.Errorf("%w: wrong recovery code", ErrInvalidCode)
		}
		used, err := s.store.ConsumeRecoveryCode(ctx, userID, set.SetID, set.Codes[i].Index, now)
		if err != nil {
			return err
		}
		if !used {
			s.audit(ctx, userID, storage.AuditReplay, "recovery")
			return fmt.Errorf("%w: recovery code already used", ErrReplayed)
		}
		remaining = set.Remaining() - 1
		return nil
	})
	if err != nil {
		return err
	}
	s.audit(ctx, userID, storage.AuditRecoveryUsed, fmt.Sprintf("%d remaining", remaining))
	return nil
}

// Regenerate replaces the user's recovery codes with a new set and returns it;
// every older code dies in the same transaction. Error: ErrNotEnabled.
func (s *Service) Regenerate(ctx context.Context, userID string) ([]string, error) {
	set, plain, err := s.newRecoverySet(userID, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.store.ReplaceRecoverySet(ctx, set); errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotEnabled
	} else if err != nil {
		return nil, err
	}
	s.audit(ctx, userID, storage.AuditRegenerate, "")
	return plain, nil
}

// Disable turns 2FA off: the secret, any pending enrolment and every recovery
// code are deleted. Error: ErrNotEnabled.
func (s *Service) Disable(ctx context.Context, userID string) error {
	if _, err := s.store.TOTP(ctx, userID); errors.Is(err, storage.ErrNotFound) {
		return ErrNotEnabled
	} else if err != nil {
		return err
	}
	if _, err := s.store.DeleteAll(ctx, userID); err != nil {
		return err
	}
	s.audit(ctx, userID, storage.AuditDisable, "")
	return s.ForgetBrowsers(ctx, userID, "2FA disabled")
}

// ForgetBrowsers revokes every browser userID chose to have remembered (2FA
// turned off, reset or set up anew, the password changed); reason is logged.
// It returns the store's error.
func (s *Service) ForgetBrowsers(ctx context.Context, userID, reason string) error {
	n, err := s.store.DeleteBrowsers(ctx, userID)
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.WithField("user_id", userID).WithField("count", n).WithField("reason", reason).Info("remembered browsers revoked")
	}
	return nil
}

// Record appends an audit event of kind for userID (events the service does
// not make itself, such as bot tokens made on the account page).
func (s *Service) Record(ctx context.Context, userID, kind, detail string) {
	s.audit(ctx, userID, kind, detail)
}

// AdminReset is an operator's reset: it deletes the user's secret, pending
// enrolment, recovery codes and failure counter, records an audit event, and
// reports whether there was anything to delete.
func (s *Service) AdminReset(ctx context.Context, userID, operator string) (bool, error) {
	existed, err := s.store.DeleteAll(ctx, userID)
	if err != nil {
		return false, err
	}
	if err := s.store.ClearFailures(ctx, userID); err != nil {
		return existed, err
	}
	s.audit(ctx, userID, storage.AuditAdminReset, "by "+operator)
	return existed, s.ForgetBrowsers(ctx, userID, "admin reset")
}

// Unlock is an operator's lifting of a lockout: it forgets the user's failed
// attempts and the back-off they earned, and records an audit event.
func (s *Service) Unlock(ctx context.Context, userID, operator string) error {
	if err := s.store.ClearFailures(ctx, userID); err != nil {
		return err
	}
	s.audit(ctx, userID, storage.AuditUnlock, "by "+operator)
	return nil
}

// Status is a user's 2FA state.
type Status struct {
	Enabled     bool
	EnabledAt   time.Time
	Pending     bool
	Remaining   int
	GeneratedAt time.Time
	Params      Params
}

// Status returns the user's 2FA state.
func (s *Service) Status(ctx context.Context, userID string) (Status, error) {
	var st Status
	rec, err := s.store.TOTP(ctx, userID)
	switch {
	case err == nil:
		st.Enabled, st.EnabledAt = true, rec.EnabledAt
		st.Params = Params{Algorithm: rec.Algorithm, Digits: rec.Digits, Period: rec.Period}
	case !errors.Is(err, storage.ErrNotFound):
		return Status{}, err
	}
	p, err := s.store.Pending(ctx, userID)
	switch {
	case err == nil:
		st.Pending = s.now().Before(p.ExpiresAt)
	case !errors.Is(err, storage.ErrNotFound):
		return Status{}, err
	}
	set, err := s.store.RecoverySet(ctx, userID)
	switch {
	case err == nil:
		st.Remaining, st.GeneratedAt = set.Remaining(), set.GeneratedAt
	case !errors.Is(err, storage.ErrNotFound):
		return Status{}, err
	}
	return st, nil
}

// Enabled reports whether the user has 2FA enabled.
func (s *Service) Enabled(ctx context.Context, userID string) (bool, error) {
	_, err := s.store.TOTP(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// EnabledFold reports whether a user whose ID equals userID up to the case of
// its letters has 2FA on, the way homeservers resolve a login's user (they
// fold the localpart's case). An ID with non-ASCII letters, which the store
// cannot fold, counts as having 2FA.
func (s *Service) EnabledFold(ctx context.Context, userID string) (bool, error) {
	for i := 0; i < len(userID); i++ {
		if userID[i] >= utf8.RuneSelf {
			return true, nil
		}
	}
	return s.store.HasTOTPFold(ctx, userID)
}

// AuditEvents returns the user's newest audit events.
func (s *Service) AuditEvents(ctx context.Context, userID string, limit int) ([]storage.AuditEvent, error) {
	return s.store.AuditEvents(ctx, userID, limit)
}

// attempt runs check under the lockout rules: the attempt is first reserved
// as a failure (atomically refused past the limit or during a back-off, so a
// correct code is not even checked), and wiped when check succeeds.
func (s *Service) attempt(ctx context.Context, userID string, now time.Time, check func() error) error {
	a, err := s.store.ReserveAttempt(ctx, userID, now, s.cfg.LockoutWindow, s.cfg.LockoutLimit)
	if err != nil {
		return err
	}
	if !a.Allowed {
		return s.locked(userID, a, now)
	}
	err = check()
	if err == nil {
		if cerr := s.store.ClearFailures(ctx, userID); cerr != nil {
			s.log.WithError(cerr).WithField("user_id", userID).Error("clearing 2FA failures")
		}
		return nil
	}
	if errors.Is(err, ErrInvalidCode) {
		s.log.WithField("user_id", userID).WithField("failures", a.Failures).Warn(err.Error())
		if a.Failures%s.cfg.LockoutLimit == 0 {
			s.audit(ctx, userID, storage.AuditLockout, fmt.Sprintf("%d consecutive failures", a.Failures))
		}
	}
	return err
}

// locked is the error of an attempt refused by the lockout (a not allowed).
func (s *Service) locked(userID string, a storage.Attempt, now time.Time) error {
	wait := a.RetryAt.Sub(now)
	if wait < time.Second {
		wait = time.Second
	}
	s.log.WithField("user_id", userID).Warn("2FA attempt refused: locked out")
	return &LockedError{RetryAfter: wait}
}

func (s *Service) newRecoverySet(userID string, now time.Time) (storage.RecoverySet, []string, error) {
	salt := make([]byte, 16)
	setID := make([]byte, 12)
	if _, err := io.ReadFull(s.rand, salt); err != nil {
		return storage.RecoverySet{}, nil, err
	}
	if _, err := io.ReadFull(s.rand, setID); err != nil {
		return storage.RecoverySet{}, nil, err
	}
	set := storage.RecoverySet{UserID: userID, SetID: hex.EncodeToString(setID), Salt: salt, GeneratedAt: now}
	plain := make([]string, 0, s.cfg.RecoveryCodes)
	seen := map[string]bool{}
	for len(plain) < s.cfg.RecoveryCodes {
		c, err := newRecoveryCode(s.rand)
		if err != nil {
			return storage.RecoverySet{}, nil, err
		}
		norm, _ := normalizeRecovery(c)
		if seen[norm] {
			continue
		}
		seen[norm] = true
		h, err := s.slowHash(context.Background(), norm, salt)
		if err != nil {
			return storage.RecoverySet{}, nil, err
		}
		set.Codes = append(set.Codes, storage.RecoveryCode{Index: len(plain), Hash: h})
		plain = append(plain, c)
	}
	return set, plain, nil
}

// slowHash runs one argon2id hash, bounded to HashesAtOnce at a time (each
// takes MemoryKiB of memory).
func (s *Service) slowHash(ctx context.Context, code string, salt []byte) ([]byte, error) {
	select {
	case s.hash <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.hash }()
	return hashRecovery(code, salt, s.cfg.Argon2), nil
}

// RecordRefused appends an AuditRefused event to userID's trail (the access
// token's owner, or the user a login named), with detail saying why.
func (s *Service) RecordRefused(ctx context.Context, userID, detail string) {
	s.audit(ctx, userID, storage.AuditRefused, detail)
}

// observe tells the observer how a check of method ended.
func (s *Service) observe(method string, err error) {
	if s.obs == nil || errors.Is(err, ErrMissingCode) || errors.Is(err, ErrNotEnabled) {
		return
	}
	result := "success"
	if _, locked := IsLocked(err); locked {
		result = "locked"
	} else if errors.Is(err, ErrReplayed) {
		result = "replay"
	} else if errors.Is(err, ErrInvalidCode) {
		result = "invalid"
	} else if err != nil {
		return // not an answer about the code (the store failed)
	}
	s.obs.Attempt(method, result)
}

func (s *Service) audit(ctx context.Context, userID, kind, detail string) {
	if s.obs != nil {
		s.obs.Event(userID, kind, detail)
	}
	if err := s.store.AddAudit(ctx, storage.AuditEvent{UserID: userID, Kind: kind, Detail: detail, At: s.now()}); err != nil {
		s.log.WithError(err).WithField("user_id", userID).WithField("event", kind).Error("writing audit event")
		return
	}
	s.log.WithField("user_id", userID).WithField("event", kind).Info("2FA audit event")
}

// audited tells the observer and the log of an audit event the store wrote.
func (s *Service) audited(ev storage.AuditEvent) {
	if s.obs != nil {
		s.obs.Event(ev.UserID, ev.Kind, ev.Detail)
	}
	s.log.WithField("user_id", ev.UserID).WithField("event", ev.Kind).Info("2FA audit event")
}
