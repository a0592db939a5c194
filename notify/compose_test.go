package notify

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

var at = time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))

func TestComposeCode(t *testing.T) {
	msg, err := ComposeCode(CodeMail{To: "alice@example.org", UserID: "@alice:example.org", ServerName: "example.org", Code: "042917", ValidFor: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if msg.To != "alice@example.org" || msg.Subject != "Your sign-in code for example.org" {
		t.Errorf("to %q subject %q", msg.To, msg.Subject)
	}
	for _, want := range []string{"    042917\n", "valid for 10 minutes", "@alice:example.org"} {
		if !strings.Contains(msg.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, msg.Text)
		}
	}
	if strings.Contains(msg.Subject, "042917") {
		t.Error("the code is in the subject (shown on lock screens)")
	}
	// The only run of 6+ digits in the mail is the code.
	if runs := regexp.MustCompile(`\d{6,}`).FindAllString(msg.Subject+msg.Text, -1); len(runs) != 1 {
		t.Errorf("digit runs %q, want just the code", runs)
	}
}

func TestComposeCodeRefuses(t *testing.T) {
	ok := CodeMail{To: "a@example.org", UserID: "@a:example.org", ServerName: "example.org", Code: "12345678", ValidFor: time.Minute}
	tests := []struct {
		name    string
		mod     func(*CodeMail)
		wantErr error
	}{
		{"8 digits fine", func(*CodeMail) {}, nil},
		{"5 digits", func(c *CodeMail) { c.Code = "12345" }, ErrBadCode},
		{"letters", func(c *CodeMail) { c.Code = "12345a" }, ErrBadCode},
		{"a password", func(c *CodeMail) { c.Code = "hunter2hunter2" }, ErrBadCode},
		{"empty", func(c *CodeMail) { c.Code = "" }, ErrBadCode},
		{"no address", func(c *CodeMail) { c.To = "" }, ErrNoRecipient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			_, err := ComposeCode(c)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	c := ok
	c.ValidFor = 0
	if _, err := ComposeCode(c); err == nil {
		t.Error("zero validity accepted")
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1 minute", 5 * time.Minute: "5 minutes", 90 * time.Second: "90 seconds", time.Second: "1 second",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// noticeWant is what each kind's mail must say (besides user ID, server name and time).
var noticeWant = map[Kind]struct {
	subject string
	text    []string
}{
	KindEnabled:             {"Two-factor authentication turned on for @alice:example.org", []string{"was turned on"}},
	KindDisabled:            {"Two-factor authentication turned off for @alice:example.org", []string{"was turned off", "only your password"}},
	KindRecoveryRegenerated: {"New recovery codes for @alice:example.org", []string{"old recovery codes no longer work"}},
	KindRecoveryUsed:        {"A recovery code was used for @alice:example.org", []string{"You have 3 recovery codes left."}},
	KindAdminReset:          {"Two-factor authentication reset for @alice:example.org", []string{"An administrator of example.org reset"}},
	KindLockout:             {"Sign-in locked for @alice:example.org after wrong codes", []string{"are locked\nuntil 2025-03-04 04:21 UTC"}},
}

func notice(k Kind) Notice {
	return Notice{Kind: k, To: "alice@example.org", UserID: "@alice:example.org", At: at, Remaining: 3, LockedUntil: at.Add(15 * time.Minute)}
}

func TestComposeNotice(t *testing.T) {
	if len(noticeWant) != len(Kinds) {
		t.Fatalf("test covers %d kinds, there are %d", len(noticeWant), len(Kinds))
	}
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			msg, err := ComposeNotice(notice(k), "example.org")
			if err != nil {
				t.Fatal(err)
			}
			want := noticeWant[k]
			if msg.Subject != want.subject {
				t.Errorf("subject %q, want %q", msg.Subject, want.subject)
			}
			for _, w := range append(want.text, "@alice:example.org", "example.org", "2025-03-04 04:06 UTC") {
				if !strings.Contains(msg.Text, w) {
					t.Errorf("text lacks %q:\n%s", w, msg.Text)
				}
			}
			if strings.Contains(msg.Text, "{{") || strings.Contains(msg.Text, "<no value>") {
				t.Errorf("template left over:\n%s", msg.Text)
			}
		})
	}
}

func TestComposeNoticeVariants(t *testing.T) {
	tests := []struct {
		name string
		n    Notice
		want string
	}{
		{"no recovery codes left", Notice{Kind: KindRecoveryUsed, Remaining: 0}, "You have no recovery codes left"},
		{"one recovery code left", Notice{Kind: KindRecoveryUsed, Remaining: 1}, "You have 1 recovery code left"},
		{"lockout end unknown", Notice{Kind: KindLockout}, "are locked\nfor a while"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.n.To, tt.n.UserID, tt.n.At = "a@example.org", "@a:example.org", at
			msg, err := ComposeNotice(tt.n, "example.org")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(msg.Text, tt.want) {
				t.Errorf("text lacks %q:\n%s", tt.want, msg.Text)
			}
		})
	}
}

func TestComposeNoticeRefuses(t *testing.T) {
	for _, tt := range []struct {
		name    string
		n       Notice
		wantErr error
	}{
		{"unknown kind", Notice{Kind: "password_changed", To: "a@example.org"}, ErrUnknownKind},
		{"the code template is no notice", Notice{Kind: kindCode, To: "a@example.org"}, ErrUnknownKind},
		{"no address", Notice{Kind: KindEnabled}, ErrNoRecipient},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ComposeNotice(tt.n, "example.org"); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
