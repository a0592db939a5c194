package admin

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// What the API and the page do, each checked against the admin's scope.

const (
	// auditShown is how many audit events a user's view shows.
	auditShown = 20
	// scanBatch and maxScans bound the rows one scoped list reads (a scoped
	// admin's page may come back short, with a cursor to go on).
	scanBatch = 200
	maxScans  = 50
)

// parseUser checks that s (percent-encoded, from a path) is a user ID.
func parseUser(s string) (string, error) {
	u, err := url.PathUnescape(s)
	if err != nil {
		return "", httperr.ErrBadParam
	}
	u = strings.TrimSpace(u)
	local, _, err := id.UserID(u).ParseAndValidateRelaxed()
	if err != nil || local == "" || len(u) > 255 {
		return "", httperr.ErrBadParam
	}
	return u, nil
}

// inScope returns ErrOutOfScope unless p administers userID.
func inScope(p principal, userID string) error {
	if !p.scope.Allows(userID) {
		return httperr.ErrOutOfScope
	}
	return nil
}

// userView is one user's status, lockout and newest audit events.
type userView struct {
	UserID      string
	Status      account.Status
	Locked      storage.UserRow
	IsLocked    bool
	AuditEvents []storage.AuditEvent
}

func (a *Admin) user(ctx context.Context, p principal, userID string) (userView, error) {
	if err := inScope(p, userID); err != nil {
		return userView{}, err
	}
	v := userView{UserID: userID}
	var err error
	if v.Status, err = a.acc.Status(ctx, userID); err != nil {
		return userView{}, err
	}
	rows, err := a.store.ListUsers(ctx, storage.UserQuery{Status: storage.UsersLocked, UserID: userID, Limit: 1, Now: a.now()})
	if err != nil {
		return userView{}, err
	}
	if len(rows) == 1 {
		v.Locked, v.IsLocked = rows[0], true
	}
	if v.AuditEvents, err = a.acc.AuditEvents(ctx, userID, auditShown); err != nil {
		return userView{}, err
	}
	return v, nil
}

// reset is `admin reset` under p's name; it reports whether there was 2FA.
func (a *Admin) reset(ctx context.Context, p principal, userID string) (bool, error) {
	if err := inScope(p, userID); err != nil {
		return false, err
	}
	return a.acc.AdminReset(ctx, userID, p.name)
}

// unlock is `admin unlock` under p's name.
func (a *Admin) unlock(ctx context.Context, p principal, userID string) error {
	if err := inScope(p, userID); err != nil {
		return err
	}
	return a.acc.Unlock(ctx, userID, p.name)
}

// listUsers returns up to q.Limit users in p's scope and the cursor of the
// next page ("" at the end).
func (a *Admin) listUsers(ctx context.Context, p principal, q storage.UserQuery) ([]storage.UserRow, string, error) {
	want := q.Limit
	q.Limit = max(want, scanBatch)
	if p.scope.All() {
		q.Limit = want
	}
	var out []storage.UserRow
	for range maxScans {
		batch, err := a.store.ListUsers(ctx, q)
		if err != nil {
			return nil, "", err
		}
		for _, r := range batch {
			q.After = r.UserID
			if p.scope.Allows(r.UserID) {
				if out = append(out, r); len(out) == want {
					return out, r.UserID, nil
				}
			}
		}
		if len(batch) < q.Limit {
			return out, "", nil
		}
	}
	return out, q.After, nil
}

// queryAudit returns up to q.Limit events in p's scope, newest first, and the
// cursor of the next page (0 at the end).
func (a *Admin) queryAudit(ctx context.Context, p principal, q storage.AuditQuery) ([]storage.AuditEvent, int64, error) {
	if q.UserID != "" {
		if err := inScope(p, q.UserID); err != nil {
			return nil, 0, err
		}
	}
	want := q.Limit
	if !p.scope.All() && q.UserID == "" {
		q.Limit = max(want, scanBatch)
	}
	var out []storage.AuditEvent
	for range maxScans {
		batch, err := a.store.QueryAudit(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		for _, ev := range batch {
			q.Before = ev.ID
			if p.scope.Allows(ev.UserID) {
				if out = append(out, ev); len(out) == want {
					return out, ev.ID, nil
				}
			}
		}
		if len(batch) < q.Limit {
			return out, 0, nil
		}
	}
	return out, q.Before, nil
}

// isClientError reports whether err is the caller's mistake (logged at info).
func isClientError(err error) bool {
	return errors.Is(err, httperr.ErrOutOfScope) || errors.Is(err, httperr.ErrBadParam) || errors.Is(err, httperr.ErrNotAdmin)
}
