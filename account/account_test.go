package account_test

import (
	"bytes"
	"context"
	"encoding/base32"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/storage"
	"github.com/matrix-2fa/matrix-2fa/storage/sqlite"
)

const alice = "@alice:example.org"

// clock is an injectable, settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// prefixReader returns prefix first, then crypto-quality randomness.
type prefixReader struct {
	prefix []byte
	rest   *os.File
}

func (r *prefixReader) Read(p []byte) (int, error) {
	if len(r.prefix) > 0 {
		n := copy(p, r.prefix)
		r.prefix = r.prefix[n:]
		return n, nil
	}
	return r.rest.Read(p)
}

type env struct {
	t     *testing.T
	dir   string
	db    *sqlite.DB
	box   *account.SecretBox
	svc   *account.Service
	clock *clock
	cfg   account.Config
	opts  []account.Option
}

func fastConfig() account.Config {
	c := account.DefaultConfig()
	c.Argon2 = account.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1} // cheap hashes for unit tests
	return c
}

func newEnv(t *testing.T, cfg account.Config, opts ...account.Option) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}, cfg: cfg, opts: opts}
	box, err := account.NewSecretBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e.box = box
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(e.dir, "2fa.db"), sqlite.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	if err := account.CheckKey(context.Background(), db, e.box); err != nil {
		e.t.Fatal(err)
	}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	opts := append([]account.Option{account.WithClock(e.clock.Now), account.WithLogger(quiet)}, e.opts...)
	svc, err := account.NewService(db, e.box, e.cfg, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.svc = db, svc
}

// restart closes the database and opens everything again, as a new process would.
func (e *env) restart() {
	e.db.Close()
	e.open()
}

func (e *env) code(secret []byte, at time.Time) string {
	e.t.Helper()
	p := e.svc.Params()
	c, err := account.CodeAt(secret, account.Step(at, p.Period), p)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// enrol enrols alice and confirms; it returns the raw secret and the recovery codes.
func (e *env) enrol(user string) ([]byte, []string) {
	e.t.Helper()
	ctx := context.Background()
	en, err := e.svc.Enrol(ctx, user)
	if err != nil {
		e.t.Fatal(err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
	if err != nil {
		e.t.Fatal(err)
	}
	codes, err := e.svc.Confirm(ctx, user, e.code(secret, e.clock.Now()))
	if err != nil {
		e.t.Fatalf("Confirm: %v", err)
	}
	if len(codes) != e.svc.RecoveryCodes() {
		e.t.Fatalf("Confirm gave %d recovery codes; want %d", len(codes), e.svc.RecoveryCodes())
	}
	e.clock.Add(30 * time.Second) // the confirming step is used up
	return secret, codes
}

func TestRFC6238Vectors(t *testing.T) {
	// RFC 6238 Appendix B: 8-digit codes for the three reference secrets.
	secrets := map[string]string{
		"SHA1":   "12345678901234567890",
		"SHA256": "12345678901234567890123456789012",
		"SHA512": "1234567890123456789012345678901234567890123456789012345678901234",
	}
	vectors := []struct {
		unix int64
		want map[string]string
	}{
		{59, map[string]string{"SHA1": "94287082", "SHA256": "46119246", "SHA512": "90693936"}},
		{1111111109, map[string]string{"SHA1": "07081804", "SHA256": "68084774", "SHA512": "25091201"}},
		{1111111111, map[string]string{"SHA1": "14050471", "SHA256": "67062674", "SHA512": "99943326"}},
		{1234567890, map[string]string{"SHA1": "89005924", "SHA256": "91819424", "SHA512": "93441116"}},
		{2000000000, map[string]string{"SHA1": "69279037", "SHA256": "90698825", "SHA512": "38618901"}},
		{20000000000, map[string]string{"SHA1": "65353130", "SHA256": "77737706", "SHA512": "47863826"}},
	}
	for alg, secret := range secrets {
		t.Run(alg, func(t *testing.T) {
			cfg := fastConfig()
			cfg.Algorithm, cfg.Digits, cfg.SecretSize, cfg.Skew = alg, 8, len(secret), 0
			devRandom, err := os.Open("/dev/urandom")
			if err != nil {
				t.Fatal(err)
			}
			defer devRandom.Close()
			e := newEnv(t, cfg, account.WithRand(&prefixReader{prefix: []byte(secret), rest: devRandom}))
			e.clock.Set(time.Unix(29, 0)) // step 0, before every vector
			raw, _ := e.enrol(alice)
			if string(raw) != secret {
				t.Fatalf("enrolled secret %q; want the RFC secret", raw)
			}
			for _, v := range vectors {
				e.clock.Set(time.Unix(v.unix, 0))
				// Another algorithm's code for the same instant must fail first.
				for other, code := range v.want {
					if other != alg && code != v.want[alg] {
						if err := e.svc.VerifyTOTP(context.Background(), alice, code); !errors.Is(err, account.ErrInvalidCode) {
							t.Errorf("t=%d: %s code accepted for %s: %v", v.unix, other, alg, err)
						}
						break
					}
				}
				if err := e.svc.VerifyTOTP(context.Background(), alice, v.want[alg]); err != nil {
					t.Errorf("t=%d: RFC code %s rejected: %v", v.unix, v.want[alg], err)
				}
			}
		})
	}
}

func TestOathtoolAgrees(t *testing.T) {
	oathtool, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatalf("oathtool is required (Debian package oathtool; scripts/test.sh installs it): %v", err)
	}
	e := newEnv(t, fastConfig())
	en, err := e.svc.Enrol(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
	oath := func(at time.Time) string {
		out, err := exec.Command(oathtool, "--totp=sha1", "-b", "--digits=6", "--time-step-size=30s",
			"--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), en.Secret).Output()
		if err != nil {
			t.Fatalf("oathtool: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	// Agreement over a range of times, a day apart plus odd offsets.
	start := time.Date(2024, 2, 29, 0, 0, 7, 0, time.UTC)
	for i := 0; i < 40; i++ {
		at := start.Add(time.Duration(i) * (24*time.Hour + 37*time.Second))
		if got, want := e.code(secret, at), oath(at); got != want {
			t.Errorf("at %v: our code %s, oathtool %s", at, got, want)
		}
	}
	// Confirm and verify with codes from oathtool alone.
	if _, err := e.svc.Confirm(context.Background(), alice, oath(e.clock.Now())); err != nil {
		t.Fatalf("Confirm with oathtool code: %v", err)
	}
	e.clock.Add(30 * time.Second)
	if err := e.svc.VerifyTOTP(context.Background(), alice, oath(e.clock.Now())); err != nil {
		t.Fatalf("VerifyTOTP with oathtool code: %v", err)
	}
}

func TestTOTPReplayAndWindow(t *testing.T) {
	e := newEnv(t, fastConfig())
	ctx := context.Background()
	secret, _ := e.enrol(alice)
	e.clock.Add(30 * time.Second) // one step past the step after confirmation
	now := e.clock.Now()
	cases := []struct {
		name    string
		code    string
		wantErr error
	}{
		{"one step old is inside the window", e.code(secret, now.Add(-30*time.Second)), nil},
		{"same step again is a replay", e.code(secret, now.Add(-30*time.Second)), account.ErrInvalidCode},
		{"current step", e.code(secret, now), nil},
		{"current step replayed", e.code(secret, now), account.ErrInvalidCode},
		{"older step after a newer one", e.code(secret, now.Add(-30*time.Second)), account.ErrInvalidCode},
		{"two steps ahead is outside the window", e.code(secret, now.Add(60*time.Second)), account.ErrInvalidCode},
		{"next step", e.code(secret, now.Add(30*time.Second)), nil},
		{"empty", "  ", account.ErrMissingCode},
	}
	for _, tc := range cases {
		err := e.svc.VerifyTOTP(ctx, alice, tc.code)
		if (tc.wantErr == nil && err != nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
			t.Errorf("%s: VerifyTOTP = %v; want %v", tc.name, err, tc.wantErr)
		}
	}
	if err := e.svc.VerifyTOTP(ctx, "@nobody:example.org", "123456"); !errors.Is(err, account.ErrNotEnabled) {
		t.Errorf("user without 2FA: %v; want ErrNotEnabled", err)
	}
	evs, _ := e.svc.AuditEvents(ctx, alice, 50)
	if countKind(evs, "replay") < 2 {
		t.Errorf("replays were not audited: %+v", evs)
	}
}

func countKind(evs []storage.AuditEvent, kind string) int {
	n := 0
	for _, ev := range evs {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func TestConcurrentSameCode(t *testing.T) {
	for _, limit := range []int{5, 100} {
		t.Run("lockout limit "+strconv.Itoa(limit), func(t *testing.T) {
			cfg := fastConfig()
			cfg.LockoutLimit = limit
			e := newEnv(t, cfg)
			secret, codes := e.enrol(alice)
			totpCode := e.code(secret, e.clock.Now())
			for _, tc := range []struct {
				name   string
				verify func() error
			}{
				{"totp", func() error { return e.svc.VerifyTOTP(context.Background(), alice, totpCode) }},
				{"recovery", func() error { return e.svc.VerifyRecovery(context.Background(), alice, codes[0]) }},
			} {
				var wins atomic.Int32
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := 0; i < 100; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						if tc.verify() == nil {
							wins.Add(1)
						}
					}()
				}
				close(start)
				wg.Wait()
				if wins.Load() != 1 {
					t.Errorf("%s: %d of 100 concurrent submissions of one code succeeded; want exactly 1", tc.name, wins.Load())
				}
				if err := e.db.ClearFailures(context.Background(), alice); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestRecoveryCodes(t *testing.T) {
	e := newEnv(t, fastConfig())
	ctx := context.Background()
	secret, codes := e.enrol(alice)
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) != 12 || c[4] != '-' || c[9] != '-' || seen[c] {
			t.Fatalf("recovery code %q is not XXXX-XXXX-XX or is repeated", c)
		}
		seen[c] = true
	}
	// Case, spaces and hyphens do not matter; each code works once.
	sloppy := strings.ToLower(strings.ReplaceAll(codes[1], "-", " "))
	if err := e.svc.VerifyRecovery(ctx, alice, sloppy); err != nil {
		t.Fatalf("sloppy spelling of a valid code: %v", err)
	}
	if err := e.svc.VerifyRecovery(ctx, alice, codes[1]); !errors.Is(err, account.ErrInvalidCode) {
		t.Fatalf("used code accepted again: %v", err)
	}
	st, _ := e.svc.Status(ctx, alice)
	if !st.Enabled || st.Remaining != 9 {
		t.Errorf("status after one use = %+v; want enabled, 9 remaining", st)
	}
	// Regenerate: every old code dies, new ones work.
	fresh, err := e.svc.Regenerate(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range codes {
		if err := e.svc.VerifyRecovery(ctx, alice, old); !errors.Is(err, account.ErrInvalidCode) {
			t.Errorf("old code %s works after Regenerate: %v", old, err)
		}
		e.db.ClearFailures(ctx, alice)
	}
	if err := e.svc.VerifyRecovery(ctx, alice, fresh[9]); err != nil {
		t.Errorf("new code rejected: %v", err)
	}
	// Re-enrolment: the confirmation kills the regenerated set too, and the
	// old secret keeps working until the new one is confirmed.
	en, err := e.svc.Enrol(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.VerifyTOTP(ctx, alice, e.code(secret, e.clock.Now())); err != nil {
		t.Errorf("old secret stopped working before the new one was confirmed: %v", err)
	}
	e.clock.Add(30 * time.Second)
	newSecret, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
	third, err := e.svc.Confirm(ctx, alice, e.code(newSecret, e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range fresh[:9] {
		if err := e.svc.VerifyRecovery(ctx, alice, old); !errors.Is(err, account.ErrInvalidCode) {
			t.Errorf("code from before re-enrolment works: %v", err)
		}
		e.db.ClearFailures(ctx, alice)
	}
	if err := e.svc.VerifyRecovery(ctx, alice, third[0]); err != nil {
		t.Errorf("code from the re-enrolment rejected: %v", err)
	}
	e.clock.Add(30 * time.Second)
	if err := e.svc.VerifyTOTP(ctx, alice, e.code(secret, e.clock.Now())); !errors.Is(err, account.ErrInvalidCode) {
		t.Errorf("old secret still works after re-enrolment: %v", err)
	}
}

func TestConfirmErrors(t *testing.T) {
	e := newEnv(t, fastConfig())
	ctx := context.Background()
	if _, err := e.svc.Confirm(ctx, alice, "123456"); !errors.Is(err, account.ErrNoPending) {
		t.Errorf("confirm without enrolment: %v", err)
	}
	en, _ := e.svc.Enrol(ctx, alice)
	secret, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
	if _, err := e.svc.Confirm(ctx, alice, ""); !errors.Is(err, account.ErrMissingCode) {
		t.Errorf("empty code: %v", err)
	}
	if _, err := e.svc.Confirm(ctx, alice, "000000x"); !errors.Is(err, account.ErrInvalidCode) {
		t.Errorf("wrong code: %v", err)
	}
	e.clock.Add(11 * time.Minute)
	if _, err := e.svc.Confirm(ctx, alice, e.code(secret, e.clock.Now())); !errors.Is(err, account.ErrNoPending) {
		t.Errorf("expired enrolment: %v", err)
	}
	if _, err := e.svc.Regenerate(ctx, alice); !errors.Is(err, account.ErrNotEnabled) {
		t.Errorf("regenerate while off: %v", err)
	}
	if err := e.svc.Disable(ctx, alice); !errors.Is(err, account.ErrNotEnabled) {
		t.Errorf("disable while off: %v", err)
	}
	if !strings.HasPrefix(en.URI, "otpauth://totp/") || !strings.Contains(en.URI, "issuer=Matrix") || !strings.Contains(en.URI, "secret="+en.Secret) {
		t.Errorf("URI = %s", en.URI)
	}
	if len(secret) < 20 {
		t.Errorf("secret is %d bytes; want at least 20", len(secret))
	}
}

func TestLockout(t *testing.T) {
	e := newEnv(t, fastConfig())
	ctx := context.Background()
	secret, codes := e.enrol(alice)
	for i := 0; i < 3; i++ {
		if err := e.svc.VerifyTOTP(ctx, alice, "000000"); !errors.Is(err, account.ErrInvalidCode) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
		e.clock.Add(time.Second)
	}
	// Failures count across both stages, and across a restart.
	e.restart()
	for i := 0; i < 2; i++ {
		if err := e.svc.VerifyRecovery(ctx, alice, "AAAA-AAAA-AA"); !errors.Is(err, account.ErrInvalidCode) {
			t.Fatalf("recovery failure %d: %v", i+1, err)
		}
	}
	for name, verify := range map[string]func() error{
		"right totp":     func() error { return e.svc.VerifyTOTP(ctx, alice, e.code(secret, e.clock.Now())) },
		"right recovery": func() error { return e.svc.VerifyRecovery(ctx, alice, codes[0]) },
	} {
		err := verify()
		le, ok := account.IsLocked(err)
		if !ok {
			t.Fatalf("6th attempt (%s) = %v; want locked", name, err)
		}
		if le.RetryAfter <= 0 || le.RetryAfter > 15*time.Minute {
			t.Errorf("RetryAfter = %v", le.RetryAfter)
		}
	}
	evs, _ := e.svc.AuditEvents(ctx, alice, 50)
	if countKind(evs, "lockout") != 1 {
		t.Errorf("want exactly one lockout audit event: %+v", evs)
	}
	e.clock.Add(15 * time.Minute)
	if err := e.svc.VerifyTOTP(ctx, alice, e.code(secret, e.clock.Now())); err != nil {
		t.Fatalf("after the window the right code fails: %v", err)
	}
	// Success clears the counter.
	for i := 0; i < 4; i++ {
		e.svc.VerifyTOTP(ctx, alice, "000000")
	}
	if err := e.svc.VerifyRecovery(ctx, alice, codes[0]); err != nil {
		t.Fatalf("5th attempt after success reset: %v", err)
	}
}

func TestDisableAndAdminReset(t *testing.T) {
	e := newEnv(t, fastConfig())
	ctx := context.Background()
	e.enrol(alice)
	if err := e.svc.Disable(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.svc.Status(ctx, alice); st.Enabled || st.Remaining != 0 || st.Pending {
		t.Errorf("status after disable = %+v", st)
	}
	e.enrol(alice)
	e.svc.VerifyTOTP(ctx, alice, "000000")
	existed, err := e.svc.AdminReset(ctx, alice, "operator")
	if err != nil || !existed {
		t.Fatalf("AdminReset = %v, %v", existed, err)
	}
	if on, _ := e.svc.Enabled(ctx, alice); on {
		t.Error("still enabled after AdminReset")
	}
	evs, _ := e.svc.AuditEvents(ctx, alice, 50)
	for _, kind := range []string{"enrol", "confirm", "disable", "admin_reset"} {
		if countKind(evs, kind) == 0 {
			t.Errorf("no %s audit event in %+v", kind, evs)
		}
	}
}

func TestNoSecretInDatabaseFile(t *testing.T) {
	e := newEnv(t, fastConfig())
	ctx := context.Background()
	secret, codes := e.enrol(alice)
	en, err := e.svc.Enrol(ctx, "@bob:example.org") // a pending secret too
	if err != nil {
		t.Fatal(err)
	}
	regen, _ := e.svc.Regenerate(ctx, alice)
	check := func(stage string) {
		entries, _ := os.ReadDir(e.dir)
		var all []byte
		for _, ent := range entries {
			b, err := os.ReadFile(filepath.Join(e.dir, ent.Name()))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		if len(all) == 0 {
			t.Fatal("database files are empty")
		}
		needles := map[string][]byte{
			"alice's base32 secret": []byte(account.EncodeSecret(secret)),
			"alice's raw secret":    secret,
			"bob's pending secret":  []byte(en.Secret),
		}
		for i, c := range append(codes, regen...) {
			needles["recovery code "+strconv.Itoa(i)] = []byte(c)
			needles["recovery code (bare) "+strconv.Itoa(i)] = []byte(strings.ReplaceAll(c, "-", ""))
		}
		for name, n := range needles {
			if bytes.Contains(all, n) {
				t.Errorf("%s: %s found in clear in the database files", stage, name)
			}
		}
		if !bytes.Contains(all, []byte(alice)) {
			t.Errorf("%s: the check is blind: alice's user ID is not in the files either", stage)
		}
	}
	check("while open")
	e.db.Close()
	check("after close")
}

func TestSecretBox(t *testing.T) {
	box, _ := account.NewSecretBox(bytes.Repeat([]byte{1}, 32))
	other, _ := account.NewSecretBox(bytes.Repeat([]byte{2}, 32))
	sealed, err := box.Seal(alice, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		box   *account.SecretBox
		owner string
		keyID string
		data  []byte
		ok    bool
	}{
		{"same owner and key", box, alice, box.KeyID(), sealed, true},
		{"another user", box, "@bob:example.org", box.KeyID(), sealed, false},
		{"another key", other, alice, box.KeyID(), sealed, false},
		{"another key claiming its own id", other, alice, other.KeyID(), sealed, false},
		{"tampered", box, alice, box.KeyID(), append(append([]byte{}, sealed[:len(sealed)-1]...), sealed[len(sealed)-1]^1), false},
		{"truncated", box, alice, box.KeyID(), sealed[:5], false},
	}
	for _, tc := range cases {
		got, err := tc.box.Open(tc.owner, tc.keyID, tc.data)
		if tc.ok && (err != nil || string(got) != "secret") {
			t.Errorf("%s: Open = %q, %v", tc.name, got, err)
		}
		if !tc.ok && err == nil {
			t.Errorf("%s: Open succeeded; want an error", tc.name)
		}
	}
	if _, err := account.NewSecretBox(make([]byte, 16)); err == nil {
		t.Error("a 16-byte key was accepted")
	}
	if box.KeyID() == other.KeyID() {
		t.Error("two keys share a key ID")
	}
}

func TestWrongKeyAtStartAndRotation(t *testing.T) {
	e := newEnv(t, fastConfig())
	ctx := context.Background()
	secret, _ := e.enrol(alice)
	wrong, _ := account.NewSecretBox(bytes.Repeat([]byte{9}, 32))
	if err := account.CheckKey(ctx, e.db, wrong); !errors.Is(err, account.ErrWrongKey) {
		t.Fatalf("CheckKey with a wrong key = %v; want ErrWrongKey", err)
	}
	n, err := account.RotateKey(ctx, e.db, e.box, wrong)
	if err != nil || n != 1 {
		t.Fatalf("RotateKey = %d, %v", n, err)
	}
	if err := account.CheckKey(ctx, e.db, e.box); !errors.Is(err, account.ErrWrongKey) {
		t.Fatalf("old key still accepted after rotation: %v", err)
	}
	e.box = wrong
	e.restart()
	if err := e.svc.VerifyTOTP(ctx, alice, e.code(secret, e.clock.Now())); err != nil {
		t.Fatalf("code rejected after rotation: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secret.key")
	k1, created, err := account.LoadOrCreateKeyFile(path)
	if err != nil || !created || len(k1) != 32 {
		t.Fatalf("create = %d bytes, %v, %v", len(k1), created, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v; want 0600", fi.Mode().Perm())
	}
	k2, created, err := account.LoadOrCreateKeyFile(path)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("reload = %v, %v", created, err)
	}
	os.WriteFile(path, []byte("not base64!"), 0o600)
	if _, _, err := account.LoadOrCreateKeyFile(path); err == nil {
		t.Error("a garbage key file was accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*account.Config)
		nerrs int
	}{
		{"defaults", func(*account.Config) {}, 0},
		{"bad algorithm", func(c *account.Config) { c.Algorithm = "MD5" }, 1},
		{"three problems at once", func(c *account.Config) { c.Digits = 7; c.SecretSize = 10; c.LockoutLimit = 1000 }, 3},
		{"issuer with colon", func(c *account.Config) { c.Issuer = "a:b" }, 1},
	}
	for _, tc := range cases {
		c := account.DefaultConfig()
		tc.edit(&c)
		if errs := c.WithDefaults().Validate(); len(errs) != tc.nerrs {
			t.Errorf("%s: %d errors (%v); want %d", tc.name, len(errs), errs, tc.nerrs)
		}
	}
}

// TestLockoutBackoffAndUnlock: each round of failures without a success
// doubles the wait; an operator's Unlock lifts it at once.
func TestLockoutBackoffAndUnlock(t *testing.T) {
	e := newEnv(t, fastConfig())
	ctx := context.Background()
	secret, _ := e.enrol(alice)
	fail5 := func() {
		t.Helper()
		for i := 0; i < 5; i++ {
			if err := e.svc.VerifyTOTP(ctx, alice, "000000"); !errors.Is(err, account.ErrInvalidCode) {
				t.Fatalf("failure %d: %v", i+1, err)
			}
		}
	}
	fail5()
	e.clock.Add(15 * time.Minute)
	fail5() // round 2: locked for 30 minutes
	e.clock.Add(15 * time.Minute)
	le, locked := account.IsLocked(e.svc.VerifyTOTP(ctx, alice, e.code(secret, e.clock.Now())))
	if !locked || le.RetryAfter != 15*time.Minute {
		t.Fatalf("15 minutes into round 2's lock: locked=%v %+v; want 15 more minutes", locked, le)
	}
	if err := e.svc.Unlock(ctx, alice, "operator"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.VerifyTOTP(ctx, alice, e.code(secret, e.clock.Now())); err != nil {
		t.Fatalf("right code after Unlock: %v", err)
	}
	evs, _ := e.svc.AuditEvents(ctx, alice, 50)
	if countKind(evs, "lockout") != 2 || countKind(evs, "unlock") != 1 {
		t.Errorf("want 2 lockout events and 1 unlock: %+v", evs)
	}
}

// TestEmailCodes: a code works once, not after its TTL, not for another
// user, only one is made a minute, it counts toward the lockout, and only
// its MAC is stored.
func TestEmailCodes(t *testing.T) {
	e := newEnv(t, fastConfig())
	ctx := context.Background()
	const user = "@mail:example.org"
	e.enrol(user)
	code, err := e.svc.NewEmailCode(ctx, user)
	if err != nil || len(code) != account.EmailCodeDigits {
		t.Fatalf("NewEmailCode = %q, %v", code, err)
	}
	if _, err := e.svc.NewEmailCode(ctx, user); !errors.Is(err, account.ErrTooSoon) {
		t.Fatalf("a second code within the minute: %v; want ErrTooSoon", err)
	}
	if err := e.svc.VerifyEmail(ctx, "@other:example.org", code); !errors.Is(err, account.ErrNotEnabled) {
		t.Fatalf("another user's code: %v", err)
	}
	if err := e.svc.VerifyEmail(ctx, user, code); err != nil {
		t.Fatalf("the code: %v", err)
	}
	if err := e.svc.VerifyEmail(ctx, user, code); !errors.Is(err, account.ErrInvalidCode) {
		t.Fatalf("the code again: %v; want ErrInvalidCode", err)
	}
	e.clock.Add(account.EmailCodeGap)
	old, err := e.svc.NewEmailCode(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(account.EmailCodeTTL)
	if err := e.svc.VerifyEmail(ctx, user, old); !errors.Is(err, account.ErrInvalidCode) {
		t.Fatalf("an expired code: %v; want ErrInvalidCode", err)
	}
	e.db.Close() // flush the WAL into the file
	raw, err := os.ReadFile(filepath.Join(e.dir, "2fa.db"))
	if err != nil || len(raw) == 0 {
		t.Fatalf("reading the database: %v", err)
	}
	if bytes.Contains(raw, []byte(old)) || bytes.Contains(raw, []byte(code)) {
		t.Fatal("an e-mail code is in the database in clear")
	}
	if !bytes.Contains(raw, []byte(user)) {
		t.Fatal("the check cannot see the database's contents")
	}
	e.open()
	for i := 0; i < 10; i++ {
		if err := e.svc.VerifyEmail(ctx, user, "000000"); err != nil {
			if _, locked := account.IsLocked(err); locked {
				return
			}
		}
	}
	t.Fatal("wrong e-mail codes never locked the user out")
}
