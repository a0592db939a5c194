package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/gateway"
	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

// fuzzGateway is a gateway in front of a minimal fake homeserver (the one
// neighbour a fuzz test isolates): whoami knows one token; login refuses.
func fuzzGateway(f testing.TB) http.Handler { return fakeHSGateway(f).Handler() }

// fuzzlessGateway is the same gateway, for tests that need only its router.
func fuzzlessGateway(t testing.TB) *gateway.Gateway { return fakeHSGateway(t) }

func fakeHSGateway(f testing.TB) *gateway.Gateway {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/_matrix/client/v3/account/whoami" && r.Header.Get("Authorization") == "Bearer tok":
			w.Write([]byte(`{"user_id":"@fuzz:example.org","device_id":"D"}`))
		case r.URL.Path == "/_matrix/client/v3/account/whoami":
			w.WriteHeader(401)
			w.Write([]byte(`{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token"}`))
		case r.URL.Path == "/_matrix/client/v3/delete_devices":
			w.WriteHeader(401)
			w.Write([]byte(`{"flows":[{"stages":["m.login.password"]}],"session":"hs","completed":null}`))
		default:
			w.WriteHeader(403)
			w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"Invalid username or password"}`))
		}
	}))
	f.Cleanup(fake.Close)
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	ctx := context.Background()
	cfg := account.DefaultConfig()
	cfg.Argon2 = account.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}
	cfg.LockoutLimit = 100
	db, box, acc := newCore(f, cfg, account.WithLogger(quiet))
	// The fuzzed user has 2FA on, so the protected endpoints run the 2FA path.
	en, err := acc.Enrol(ctx, "@fuzz:example.org")
	if err != nil {
		f.Fatal(err)
	}
	secret, _ := decodeB32(en.Secret)
	code, _ := account.CodeAt(secret, account.Step(time.Now(), 30), acc.Params())
	if _, err := acc.Confirm(ctx, "@fuzz:example.org", code); err != nil {
		f.Fatal(err)
	}
	client, err := homeserver.New(fake.URL, homeserver.Options{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	gw := gateway.New(gateway.Options{Config: gateway.Config{LoginTTL: time.Minute, TokenTTL: time.Minute, UIATTL: time.Minute,
		SSOProviderID: "x", SSOProviderName: "x"}, Homeserver: client, Accounts: acc, Store: db, Box: box, Logger: quiet})
	return gw
}

var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/_matrix/client/v3/account/two-factor/totp"},
	{"DELETE", "/_matrix/client/v3/account/two-factor/totp"},
	{"POST", "/_matrix/client/v3/account/two-factor/totp/confirm"},
	{"POST", "/_matrix/client/v3/account/two-factor/recovery"},
	{"POST", "/_matrix/client/v3/login"},
	{"POST", "/_matrix/client/v3/delete_devices"},
}

// FuzzRequestBodies sends arbitrary bodies to every intercepted route: the
// gateway must never panic and never answer bad input with a 5xx, and every
// error must be a Matrix error.
func FuzzRequestBodies(f *testing.F) {
	seeds := []string{
		``, `{}`, `null`, `[]`, `"x"`, `{`, `{"code":"123456"}`, `{"code":123456}`, `{"token":"AAAA-BBBB-CC"}`,
		`{"auth":null}`, `{"auth":{}}`, `{"auth":"x"}`, `{"auth":{"session":"S"}}`, `{"auth":{"type":"m.login.2fa.totp","session":"S","code":"000000"}}`,
		`{"auth":{"type":"m.login.2fa.recovery","code":"AAAA-AAAA-AA"}}`, `{"auth":{"type":"m.login.password","password":"x"}}`,
		`{"auth":{"type":"m.login.password","identifier":{"type":"m.id.user","user":5},"password":[]}}`,
		`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"fuzz"},"password":"pw"}`,
		`{"type":"m.login.2fa.totp","session":"S","code":"1"}`, `{"type":"m.login.token","token":"t"}`, `{"type":7}`,
		`{"devices":["D"],"auth":{"type":"m.login.2fa.totp","code":"000000"}}`, "\xff\xfe", `{"a":1e999}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	h := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q: %d %s", rt.method, rt.path, body, rec.Code, rec.Body.Bytes())
		}
		if rec.Code >= 400 {
			var e struct {
				ErrCode string `json:"errcode"`
				Error   string `json:"error"`
				Flows   []any  `json:"flows"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || (e.ErrCode == "" && e.Flows == nil) {
				t.Fatalf("%s %s with %q: %d without a Matrix error body: %s", rt.method, rt.path, body, rec.Code, rec.Body.Bytes())
			}
		}
	})
}
