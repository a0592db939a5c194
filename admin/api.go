package admin

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/httperr"
	"github.com/matrix-2fa/matrix-2fa/httpx"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// The admin API: JSON, Matrix errors, times in Unix milliseconds.

const (
	defaultLimit = 100
	maxLimit     = 1000
)

// handler is an admin API handler: it runs for an authorised principal and
// returns the response body or an error (httperr maps it).
type handler func(r *http.Request, p principal) (any, error)

// api wraps h: authorisation, the request's log fields, errors.
func (a *Admin) api(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := a.authorize(r)
		if err == nil {
			r = httpx.WithLogger(r, httpx.Logger(r).WithField("admin", p.name))
			var body any
			if body, err = h(r, p); err == nil {
				httpx.WriteJSON(w, http.StatusOK, body)
				return
			}
		}
		if isClientError(err) {
			httpx.Logger(r).WithError(err).Info("admin API: refused")
		}
		httpx.WriteError(w, r, err)
	}
}

// ListUsers is GET users?status=&from=&limit=.
func (a *Admin) ListUsers(w http.ResponseWriter, r *http.Request) { a.api(a.listUsersAPI)(w, r) }

// User is GET users/{userId}.
func (a *Admin) User(w http.ResponseWriter, r *http.Request) { a.api(a.userAPI)(w, r) }

// Reset is POST users/{userId}/reset.
func (a *Admin) Reset(w http.ResponseWriter, r *http.Request) { a.api(a.resetAPI)(w, r) }

// Unlock is POST users/{userId}/unlock.
func (a *Admin) Unlock(w http.ResponseWriter, r *http.Request) { a.api(a.unlockAPI)(w, r) }

// Audit is GET audit?user=&kind=&since=&from=&limit=.
func (a *Admin) Audit(w http.ResponseWriter, r *http.Request) { a.api(a.auditAPI)(w, r) }

// Counts is GET counts.
func (a *Admin) Counts(w http.ResponseWriter, r *http.Request) { a.api(a.countsAPI)(w, r) }

func msOrNil(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

type userRowJSON struct {
	UserID      string `json:"user_id"`
	Enabled     bool   `json:"enabled"`
	EnabledAt   *int64 `json:"enabled_at"`
	Locked      bool   `json:"locked"`
	LockedUntil *int64 `json:"locked_until"`
}

func rowJSON(r storage.UserRow) userRowJSON {
	return userRowJSON{UserID: r.UserID, Enabled: r.Enabled, EnabledAt: msOrNil(r.EnabledAt),
		Locked: !r.LockedUntil.IsZero(), LockedUntil: msOrNil(r.LockedUntil)}
}

type eventJSON struct {
	ID     int64  `json:"id"`
	UserID string `json:"user_id"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	At     int64  `json:"at"`
}

func eventsJSON(evs []storage.AuditEvent) []eventJSON {
	out := make([]eventJSON, 0, len(evs))
	for _, ev := range evs {
		out = append(out, eventJSON{ID: ev.ID, UserID: ev.UserID, Kind: ev.Kind, Detail: ev.Detail, At: ev.At.UnixMilli()})
	}
	return out
}

// limit reads the limit parameter (default 100, at most 1000).
func limit(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, httperr.ErrBadParam
	}
	return min(n, maxLimit), nil
}

func (a *Admin) listUsersAPI(r *http.Request, p principal) (any, error) {
	q := r.URL.Query()
	n, err := limit(q)
	if err != nil {
		return nil, err
	}
	status := q.Get("status")
	switch status {
	case "":
		status = storage.UsersAll
	case storage.UsersAll, storage.UsersEnabled, storage.UsersLocked:
	default:
		return nil, httperr.ErrBadParam
	}
	rows, next, err := a.listUsers(r.Context(), p, storage.UserQuery{Status: status, After: q.Get("from"), Limit: n, Now: a.now()})
	if err != nil {
		return nil, err
	}
	out := struct {
		Users     []userRowJSON `json:"users"`
		NextBatch string        `json:"next_batch,omitempty"`
	}{Users: []userRowJSON{}, NextBatch: next}
	for _, row := range rows {
		out.Users = append(out.Users, rowJSON(row))
	}
	return out, nil
}

func (a *Admin) userAPI(r *http.Request, p principal) (any, error) {
	userID, err := parseUser(mux.Vars(r)["userId"])
	if err != nil {
		return nil, err
	}
	v, err := a.user(r.Context(), p, userID)
	if err != nil {
		return nil, err
	}
	st := v.Status
	return map[string]any{
		"user_id": userID, "enabled": st.Enabled, "enabled_at": msOrNil(st.EnabledAt), "pending": st.Pending,
		"recovery_codes_remaining": st.Remaining, "locked": v.IsLocked, "locked_until": msOrNil(v.Locked.LockedUntil),
		"audit": eventsJSON(v.AuditEvents),
	}, nil
}

func (a *Admin) resetAPI(r *http.Request, p principal) (any, error) {
	userID, err := parseUser(mux.Vars(r)["userId"])
	if err != nil {
		return nil, err
	}
	existed, err := a.reset(r.Context(), p, userID)
	if err != nil {
		return nil, err
	}
	httpx.Logger(r).WithFields(logrus.Fields{"user_id": userID, "had_2fa": existed}).Info("admin API: two-factor authentication reset")
	return map[string]any{"user_id": userID, "had_2fa": existed}, nil
}

func (a *Admin) unlockAPI(r *http.Request, p principal) (any, error) {
	userID, err := parseUser(mux.Vars(r)["userId"])
	if err != nil {
		return nil, err
	}
	if err := a.unlock(r.Context(), p, userID); err != nil {
		return nil, err
	}
	httpx.Logger(r).WithField("user_id", userID).Info("admin API: unlocked")
	return map[string]any{"user_id": userID}, nil
}

func (a *Admin) auditAPI(r *http.Request, p principal) (any, error) {
	q := r.URL.Query()
	aq, err := auditQuery(q)
	if err != nil {
		return nil, err
	}
	evs, next, err := a.queryAudit(r.Context(), p, aq)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"events": eventsJSON(evs)}
	if next > 0 {
		out["next_batch"] = strconv.FormatInt(next, 10)
	}
	return out, nil
}

// auditQuery reads user, kind, since (Unix ms or RFC 3339), from and limit.
func auditQuery(q url.Values) (storage.AuditQuery, error) {
	n, err := limit(q)
	if err != nil {
		return storage.AuditQuery{}, err
	}
	aq := storage.AuditQuery{Kind: q.Get("kind"), Limit: n}
	if u := q.Get("user"); u != "" {
		if aq.UserID, err = parseUser(u); err != nil {
			return storage.AuditQuery{}, err
		}
	}
	if s := q.Get("since"); s != "" {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			aq.Since = time.UnixMilli(ms)
		} else if aq.Since, err = time.Parse(time.RFC3339, s); err != nil {
			return storage.AuditQuery{}, httperr.ErrBadParam
		}
	}
	if s := q.Get("from"); s != "" {
		if aq.Before, err = strconv.ParseInt(s, 10, 64); err != nil || aq.Before < 1 {
			return storage.AuditQuery{}, httperr.ErrBadParam
		}
	}
	return aq, nil
}

// countsAPI counts every user: only for admins of every user.
func (a *Admin) countsAPI(r *http.Request, p principal) (any, error) {
	if !p.scope.All() {
		return nil, httperr.ErrOutOfScope
	}
	c, err := a.store.CountUsers(r.Context(), a.now())
	if err != nil {
		return nil, err
	}
	return map[string]int{"enabled": c.Enabled, "locked": c.Locked, "pending_enrolments": c.Pending}, nil
}
