package notify

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Kind is what happened to a user's second factor. Its values are also metric label values.
type Kind string

// The notices a user gets.
const (
	KindEnabled             Kind = "enabled"
	KindDisabled            Kind = "disabled"
	KindRecoveryRegenerated Kind = "recovery_regenerated"
	KindRecoveryUsed        Kind = "recovery_used"
	KindAdminReset          Kind = "admin_reset"
	KindLockout             Kind = "lockout"
)

// kindCode names the e-mail with a one-time code among the templates (it is no notice).
const kindCode = "code"

// Kinds lists every notice kind.
var Kinds = []Kind{KindEnabled, KindDisabled, KindRecoveryRegenerated, KindRecoveryUsed, KindAdminReset, KindLockout}

// Notice is one notification to a user. It carries nothing secret.
type Notice struct {
	Kind        Kind
	To          string    // e-mail address
	UserID      string    // Matrix user ID, named in the text
	At          time.Time // when it happened; zero: the Notifier's clock when queued
	Remaining   int       // KindRecoveryUsed: recovery codes left
	LockedUntil time.Time // KindLockout: end of the lockout; zero if unknown
}

// CodeMail is the e-mail carrying a one-time code for the e-mail second factor.
type CodeMail struct {
	To         string
	UserID     string
	ServerName string        // the homeserver's name, as users know it
	Code       string        // at least 6 digits
	ValidFor   time.Duration // how long the code is accepted
}

//go:embed templates/*.tmpl
var templateFS embed.FS

// templates holds one parsed set per kind, each defining "subject" and "text".
var templates = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range append([]string{kindCode}, kindStrings()...) {
		out[name] = template.Must(template.New(name).Option("missingkey=error").
			ParseFS(templateFS, "templates/"+name+".tmpl"))
	}
	return out
}()

func kindStrings() []string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return s
}

// Errors of ComposeCode and ComposeNotice.
var (
	ErrBadCode     = errors.New("notify: a code must be at least 6 digits")
	ErrUnknownKind = errors.New("notify: unknown notice kind")
	ErrNoRecipient = errors.New("notify: no recipient address")
)

// ComposeCode writes the e-mail for c. It returns ErrBadCode unless c.Code is 6 or more digits,
// so nothing but such a code can end up in it, and an error for a missing address or validity.
func ComposeCode(c CodeMail) (Message, error) {
	if len(c.Code) < 6 || strings.Trim(c.Code, "0123456789") != "" {
		return Message{}, ErrBadCode
	}
	if c.To == "" {
		return Message{}, ErrNoRecipient
	}
	if c.ValidFor <= 0 {
		return Message{}, fmt.Errorf("notify: code validity %s is not positive", c.ValidFor)
	}
	return compose(kindCode, c.To, map[string]any{
		"ServerName": c.ServerName, "UserID": c.UserID, "Code": c.Code, "ValidFor": humanDuration(c.ValidFor),
	})
}

// ComposeNotice writes the e-mail for n, naming the homeserver serverName. It returns
// ErrUnknownKind or ErrNoRecipient for a notice that cannot be sent.
func ComposeNotice(n Notice, serverName string) (Message, error) {
	if _, ok := templates[string(n.Kind)]; !ok || n.Kind == kindCode {
		return Message{}, fmt.Errorf("%w: %q", ErrUnknownKind, n.Kind)
	}
	if n.To == "" {
		return Message{}, ErrNoRecipient
	}
	until := ""
	if !n.LockedUntil.IsZero() {
		until = formatTime(n.LockedUntil)
	}
	return compose(string(n.Kind), n.To, map[string]any{
		"ServerName": serverName, "UserID": n.UserID, "At": formatTime(n.At),
		"Remaining": n.Remaining, "LockedUntil": until,
	})
}

func compose(name, to string, data map[string]any) (Message, error) {
	t := templates[name]
	var subject, text bytes.Buffer
	if err := t.ExecuteTemplate(&subject, "subject", data); err != nil {
		return Message{}, fmt.Errorf("notify: %s subject: %w", name, err)
	}
	if err := t.ExecuteTemplate(&text, "text", data); err != nil {
		return Message{}, fmt.Errorf("notify: %s text: %w", name, err)
	}
	return Message{
		To:      to,
		Subject: strings.Join(strings.Fields(subject.String()), " "), // one line, whatever the data
		Text:    text.String(),
	}, nil
}

func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// humanDuration says d in whole minutes when it is some, in seconds otherwise.
func humanDuration(d time.Duration) string {
	unit, n := "second", int64(d/time.Second)
	if d >= time.Minute && d%time.Minute == 0 {
		unit, n = "minute", int64(d/time.Minute)
	}
	if n != 1 {
		unit += "s"
	}
	return strconv.FormatInt(n, 10) + " " + unit
}
