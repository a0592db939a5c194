package account

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// VerifyTOTP checks a TOTP code for userID: within ±skew steps and newer than
// the last accepted step, which it advances atomically, so every code works at
// most once even under concurrent requests. Errors: ErrMissingCode,
// ErrNotEnabled, ErrInvalidCode (wrong or replayed), *LockedError.
func (s *Service) VerifyTOTP(ctx context.Context, userID, code string) error {
	_, err := s.useTOTP(ctx, userID, code, storage.SessionStep{})
	return err
}

// VerifyTOTPStep is VerifyTOTP that also makes step's change to its UIA
// session (the stage completed, or the session taken when step.Take) in the
// same store transaction as the code's use: one write per completed stage.
// It reports whether the session step happened (false when the session was
// gone or its completed stages had changed: the code is used all the same)
// and the taken session. Errors: those of VerifyTOTP.
func (s *Service) VerifyTOTPStep(ctx context.Context, userID, code string, step storage.SessionStep) (bool, storage.UIASession, error) {
	out, err := s.useTOTP(ctx, userID, code, step)
	return out.SessionDone, out.Session, err
}

// useTOTP checks code against userID's secret and records the check with
// UseTOTP: the lockout decides first, in the store's transaction, so a correct
// code counts for nothing while the user is locked out, and a wrong or
// replayed one counts as a failure.
func (s *Service) useTOTP(ctx context.Context, userID, code string, step storage.SessionStep) (out storage.TOTPOutcome, err error) {
	defer func() { s.observe("totp", err) }()
	code = strings.TrimSpace(code)
	if code == "" {
		return out, ErrMissingCode
	}
	rec, err := s.store.TOTP(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return out, ErrNotEnabled
	}
	if err != nil {
		return out, err
	}
	now := s.now()
	u := storage.TOTPUse{UserID: userID, Now: now, Window: s.cfg.LockoutWindow, Limit: s.cfg.LockoutLimit, Session: step,
		Audit: func(o storage.TOTPOutcome) []storage.AuditEvent { return s.totpEvents(userID, o, now) }}
	if u.Step, u.Matched, err = s.matchTOTP(rec, code, now); err != nil {
		return out, err
	}
	out, err = s.store.UseTOTP(ctx, u)
	if errors.Is(err, storage.ErrNotFound) { // 2FA turned off since the secret was read
		return storage.TOTPOutcome{}, ErrNotEnabled
	}
	if err != nil {
		return storage.TOTPOutcome{}, err
	}
	return out, s.totpResult(userID, out, now)
}

// matchTOTP decrypts rec's secret and reports the step code matches.
func (s *Service) matchTOTP(rec storage.TOTP, code string, now time.Time) (int64, bool, error) {
	secret, err := s.box.Open(rec.UserID, rec.KeyID, rec.Secret)
	if err != nil {
		return 0, false, err
	}
	defer clear(secret)
	return matchStep(secret, code, now, Params{Algorithm: rec.Algorithm, Digits: rec.Digits, Period: rec.Period}, s.cfg.Skew)
}

// totpEvents are the audit events of a TOTP check's outcome o: a replay, and
// a lockout when the failure completes a round of LockoutLimit.
func (s *Service) totpEvents(userID string, o storage.TOTPOutcome, now time.Time) []storage.AuditEvent {
	var evs []storage.AuditEvent
	if !o.Allowed || o.Accepted {
		return nil
	}
	if o.Replayed {
		evs = append(evs, storage.AuditEvent{UserID: userID, Kind: storage.AuditReplay, Detail: "totp", At: now})
	}
	if o.Failures%s.cfg.LockoutLimit == 0 {
		evs = append(evs, storage.AuditEvent{UserID: userID, Kind: storage.AuditLockout,
			Detail: fmt.Sprintf("%d consecutive failures", o.Failures), At: now})
	}
	return evs
}

// totpResult is the error of a recorded TOTP check's outcome o; it logs the
// check and tells the observer of the audit events the store wrote.
func (s *Service) totpResult(userID string, o storage.TOTPOutcome, now time.Time) error {
	if !o.Allowed {
		return s.locked(userID, o.Attempt, now)
	}
	if o.Accepted {
		return nil
	}
	err := fmt.Errorf("%w: wrong TOTP code", ErrInvalidCode)
	if o.Replayed {
		err = fmt.Errorf("%w: TOTP code (step not newer than the last accepted)", ErrReplayed)
	}
	for _, ev := range s.totpEvents(userID, o, now) {
		s.audited(ev)
	}
	s.log.WithField("user_id", userID).WithField("failures", o.Failures).Warn(err.Error())
	return err
}
