package gateway_test

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

const tfPath = "/_matrix/client/v3/account/two-factor"

func TestTwoFactorLifecycle(t *testing.T) {
	e := newEnv(t)
	u := e.enrol("life")

	st := e.gw("GET", tfPath, u.AccessToken, nil)
	expect(t, st, 200, "")
	totp, _ := st.Body["totp"].(map[string]any)
	rec, _ := st.Body["recovery"].(map[string]any)
	if totp["enabled"] != true || totp["pending"] != false || totp["enabled_at"] == nil || rec["remaining"] != float64(e.acc.RecoveryCodes()) || rec["generated_at"] == nil {
		t.Fatalf("status after enrolment = %s", st.Raw)
	}
	if en := u.enrolRaw; en.str("qr_svg") == "" || en.str("qr_png") == "" || en.Body["expires_in_ms"] != float64(600000) {
		t.Errorf("enrolment response = %s", en.Raw)
	}
	if p, _ := u.enrolRaw.Body["params"].(map[string]any); p["algorithm"] != "SHA1" || p["digits"] != float64(6) || p["period"] != float64(30) {
		t.Errorf("params = %v", u.enrolRaw.Body["params"])
	}

	// Regenerate needs a second factor: flows [[totp],[recovery]].
	ch := e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{})
	expect(t, ch, 401, "")
	if got := ch.flows(); len(got) != 2 || got[0][0] != "m.login.2fa.totp" || got[1][0] != "m.login.2fa.recovery" || len(got[0]) != 1 {
		t.Fatalf("regenerate flows = %v", got)
	}
	if params, _ := ch.Body["params"].(map[string]any); params["m.login.2fa.totp"] == nil {
		t.Errorf("no TOTP params in %s", ch.Raw)
	}
	r := e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": ch.str("session"), "code": e.code(u)}})
	expect(t, r, 200, "")
	fresh := r.strings("recovery_codes")
	if len(fresh) != 10 {
		t.Fatalf("regenerated %d codes", len(fresh))
	}
	// Every older code is dead; a new one works (as the 2FA stage of another regeneration, by token alias).
	old := e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.recovery", "code": u.recovery[0]}})
	expect(t, old, 401, "M_FORBIDDEN")
	r = e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.recovery", "session": old.str("session"), "token": fresh[0]}})
	expect(t, r, 200, "")
	third := r.strings("recovery_codes") // that regeneration killed "fresh" in turn

	// Re-enrolment while enabled needs password + 2FA; the old secret keeps working until confirmed.
	ch = e.gw("POST", tfPath+"/totp", u.AccessToken, map[string]any{})
	if got := ch.flows(); len(got) != 2 || strings.Join(got[0], ",") != "m.login.password,m.login.2fa.totp" {
		t.Fatalf("re-enrol flows = %v", got)
	}
	r = e.gw("POST", tfPath+"/totp", u.AccessToken, map[string]any{"auth": passwordAuth(u.User, ch.str("session"))})
	expect(t, r, 401, "")
	if c := r.strings("completed"); len(c) != 1 || c[0] != "m.login.password" {
		t.Fatalf("completed after password = %v", c)
	}
	r = e.gw("POST", tfPath+"/totp", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": ch.str("session"), "code": e.code(u)}})
	expect(t, r, 200, "")
	if st := e.gw("GET", tfPath, u.AccessToken, nil); st.Body["totp"].(map[string]any)["pending"] != true {
		t.Errorf("status does not show the pending re-enrolment: %s", st.Raw)
	}

	// Disable: password then 2FA (the old secret still counts).
	ch = e.gw("DELETE", tfPath+"/totp", u.AccessToken, nil)
	expect(t, ch, 401, "")
	if got := ch.flows(); len(got) != 2 || strings.Join(got[1], ",") != "m.login.password,m.login.2fa.recovery" {
		t.Fatalf("disable flows = %v", got)
	}
	r = e.gw("DELETE", tfPath+"/totp", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": ch.str("session"), "code": e.code(u)}})
	expect(t, r, 401, "M_FORBIDDEN") // out of order: password comes first
	r = e.gw("DELETE", tfPath+"/totp", u.AccessToken, map[string]any{"auth": passwordAuth(u.User, ch.str("session"))})
	expect(t, r, 401, "")
	r = e.gw("DELETE", tfPath+"/totp", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.recovery", "session": ch.str("session"), "code": third[1]}})
	expect(t, r, 200, "")
	st = e.gw("GET", tfPath, u.AccessToken, nil)
	if st.Body["totp"].(map[string]any)["enabled"] != false || st.Body["recovery"].(map[string]any)["remaining"] != float64(0) ||
		st.Body["totp"].(map[string]any)["pending"] != false {
		t.Fatalf("status after disable = %s", st.Raw)
	}
}

func TestTwoFactorErrors(t *testing.T) {
	e := newEnv(t, func(_ *gatewayConfig, a *accountConfig) { a.LockoutLimit = 3 })
	u := e.enrol("errs")
	plain := tesths.RegisterUser(t, e.hs, "plain")
	big := `{"code":"` + strings.Repeat("1", 70<<10) + `"}`

	// A session started for regeneration, for reuse against other requests.
	regen := e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{})
	expect(t, regen, 401, "")
	enrolSession := e.gw("POST", tfPath+"/totp", u.AccessToken, map[string]any{})
	expect(t, enrolSession, 401, "")
	cases := []struct {
		name    string
		method  string
		path    string
		token   string
		body    any
		status  int
		errcode string
	}{
		{"no token", "GET", tfPath, "", nil, 401, "M_MISSING_TOKEN"},
		{"unknown token", "GET", tfPath, "nope", nil, 401, "M_UNKNOWN_TOKEN"},
		{"confirm without code", "POST", tfPath + "/totp/confirm", u.AccessToken, map[string]any{}, 400, "M_MISSING_PARAM"},
		{"confirm, code not a string", "POST", tfPath + "/totp/confirm", u.AccessToken, map[string]any{"code": 123456}, 400, "M_BAD_JSON"},
		{"confirm without pending", "POST", tfPath + "/totp/confirm", plain.AccessToken, map[string]any{"code": "123456"}, 400, "M_INVALID_PARAM"},
		{"malformed JSON", "POST", tfPath + "/recovery", u.AccessToken, "{nope", 400, "M_NOT_JSON"},
		{"body not an object", "POST", tfPath + "/recovery", u.AccessToken, `["x"]`, 400, "M_BAD_JSON"},
		{"auth not an object", "POST", tfPath + "/recovery", u.AccessToken, `{"auth":"x"}`, 400, "M_BAD_JSON"},
		{"body over 64 KiB", "POST", tfPath + "/totp/confirm", u.AccessToken, big, 413, "M_TOO_LARGE"},
		{"regenerate while off", "POST", tfPath + "/recovery", plain.AccessToken, map[string]any{}, 400, "M_INVALID_PARAM"},
		{"disable while off", "DELETE", tfPath + "/totp", plain.AccessToken, nil, 400, "M_INVALID_PARAM"},
		{"unknown UIA session", "POST", tfPath + "/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"session": "forged"}}, 400, "M_INVALID_PARAM"},
		{"session of another endpoint", "DELETE", tfPath + "/totp", u.AccessToken, map[string]any{"auth": map[string]any{"session": regen.str("session")}}, 403, "M_FORBIDDEN"},
		{"same path, another method", "DELETE", tfPath + "/totp", u.AccessToken, map[string]any{"auth": map[string]any{"session": enrolSession.str("session")}}, 403, "M_FORBIDDEN"},
		{"session on another prefix", "POST", "/_matrix/client/r0/account/two-factor/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"session": regen.str("session")}}, 403, "M_FORBIDDEN"},
		{"session of another user", "POST", tfPath + "/totp", plain.AccessToken, map[string]any{"auth": map[string]any{"session": regen.str("session")}}, 403, "M_FORBIDDEN"},
		{"stage with no code", "POST", tfPath + "/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": regen.str("session")}}, 400, "M_MISSING_PARAM"},
		{"unknown stage type", "POST", tfPath + "/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.bogus", "session": regen.str("session")}}, 400, "M_INVALID_PARAM"},
		{"wrong code in UIA", "POST", tfPath + "/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": regen.str("session"), "code": "000000"}}, 401, "M_FORBIDDEN"},
		{"wrong password in UIA", "POST", tfPath + "/totp", plain.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.password", "password": "wrong"}}, 401, "M_FORBIDDEN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.gw(tc.method, tc.path, tc.token, tc.body)
			expect(t, r, tc.status, tc.errcode)
			if r.str("error") == "" {
				t.Errorf("no error text: %s", r.Raw)
			}
			if tc.status == 401 && tc.errcode == "M_FORBIDDEN" && (r.str("session") == "" || len(r.flows()) == 0) {
				t.Errorf("a failed stage must come back inside the UIA body: %s", r.Raw)
			}
		})
	}

	// Wrong and replayed codes read the same.
	code := e.code(u)
	ok := e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "session": regen.str("session"), "code": code}})
	expect(t, ok, 200, "")
	again := e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "code": code}})
	wrong := e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "code": "000000"}})
	expect(t, again, 401, "M_FORBIDDEN")
	expect(t, wrong, 401, "M_FORBIDDEN")
	if again.str("error") != wrong.str("error") {
		t.Errorf("replayed %q and wrong %q codes read differently", again.str("error"), wrong.str("error"))
	}
	// The success above cleared earlier failures; two so far, a third fills the limit,
	// and then even the right code is refused without being checked.
	expect(t, e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.recovery", "code": "AAAA-AAAA-AA"}}), 401, "M_FORBIDDEN")
	locked := e.gw("POST", tfPath+"/recovery", u.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.2fa.totp", "code": e.code(u)}})
	expect(t, locked, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := locked.Body["retry_after_ms"].(float64); ms <= 0 || locked.Header.Get("Retry-After") == "" {
		t.Errorf("429 without retry_after_ms / Retry-After: %s %v", locked.Raw, locked.Header)
	}
	confirmLocked := e.gw("POST", tfPath+"/totp/confirm", u.AccessToken, map[string]any{"code": "123456"})
	expect(t, confirmLocked, 400, "M_INVALID_PARAM") // nothing pending: refused before any code check

	// Confirm with a wrong code is 403 outside UIA; an expired enrolment is 400.
	e.clock.Add(16 * time.Minute)
	ch := e.gw("POST", tfPath+"/totp", plain.AccessToken, map[string]any{"auth": passwordAuth(plain, "")})
	expect(t, ch, 200, "")
	expect(t, e.gw("POST", tfPath+"/totp/confirm", plain.AccessToken, map[string]any{"code": "000000"}), 403, "M_FORBIDDEN")
	e.clock.Add(11 * time.Minute)
	expect(t, e.gw("POST", tfPath+"/totp/confirm", plain.AccessToken, map[string]any{"code": "000000"}), 400, "M_INVALID_PARAM")
	// An expired UIA session is refused.
	s := e.gw("POST", tfPath+"/totp", plain.AccessToken, map[string]any{})
	e.clock.Add(16 * time.Minute)
	expect(t, e.gw("POST", tfPath+"/totp", plain.AccessToken, map[string]any{"auth": passwordAuth(plain, s.str("session"))}), 400, "M_INVALID_PARAM")
}

func TestQRCodes(t *testing.T) {
	zbarimg, err := exec.LookPath("zbarimg")
	if err != nil {
		t.Fatalf("zbarimg is required (Debian package zbar-tools; scripts/test.sh installs it): %v", err)
	}
	e := newEnv(t)
	u := e.enrol("qr")
	pngBytes, err := base64.StdEncoding.DecodeString(u.enrolRaw.str("qr_png"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "qr.png")
	if err := os.WriteFile(file, pngBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(zbarimg, "--quiet", "--raw", file).Output()
	if err != nil {
		t.Fatalf("zbarimg could not decode the PNG: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != u.uri {
		t.Fatalf("PNG decodes to %q; want the otpauth URI %q", got, u.uri)
	}
	if !strings.Contains(u.uri, "secret="+strings.TrimRight(base32NoPad(u.secret), "=")) || !strings.Contains(u.uri, "issuer=") {
		t.Errorf("URI %q lacks the secret or issuer", u.uri)
	}

	// The SVG is well-formed XML, and module by module the same as the PNG.
	svg := u.enrolRaw.str("qr_svg")
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := dec.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed XML: %v", err)
			}
			break
		}
	}
	view := regexp.MustCompile(`viewBox="0 0 (\d+) (\d+)"`).FindStringSubmatch(svg)
	if view == nil {
		t.Fatalf("no viewBox in the SVG")
	}
	n, _ := strconv.Atoi(view[1])
	svgDark := map[[2]int]bool{}
	for _, m := range regexp.MustCompile(`M(\d+) (\d+)h1v1h-1z`).FindAllStringSubmatch(svg, -1) {
		x, _ := strconv.Atoi(m[1])
		y, _ := strconv.Atoi(m[2])
		svgDark[[2]int{x, y}] = true
	}
	img, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil {
		t.Fatal(err)
	}
	scale := img.Bounds().Dx() / n
	if scale*n != img.Bounds().Dx() || len(svgDark) < 100 {
		t.Fatalf("PNG %d px is not a whole number of %d modules, or SVG has only %d modules", img.Bounds().Dx(), n, len(svgDark))
	}
	mismatches := 0
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			r, _, _, _ := img.At(x*scale+scale/2, y*scale+scale/2).RGBA()
			if (r < 0x8000) != svgDark[[2]int{x, y}] {
				mismatches++
			}
		}
	}
	if mismatches != 0 {
		t.Fatalf("%d of %d modules differ between the SVG and the PNG", mismatches, n*n)
	}
}
