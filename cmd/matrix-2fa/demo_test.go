package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo for real: it builds (or reuses) Dendrite, starts it
// and the gateway on loopback, and prints what to try; the printed URL must
// serve the gateway, and cancelling stops everything with exit code 0.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	errOut := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"demo", "--listen", "127.0.0.1:0"}, out, errOut) }()

	urlRE := regexp.MustCompile(`running at (http://127\.0\.0\.1:\d+) in front of a throwaway Dendrite`)
	var gw string
	deadline := time.Now().Add(5 * time.Minute)
	for gw == "" {
		if m := urlRE.FindStringSubmatch(out.String()); m != nil {
			gw = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("demo exited early with %d:\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not start within 5 minutes:\n%s\n%s", out.String(), errOut.String())
		}
	}
	for _, want := range []string{"@alice:localhost", "/_matrix2fa/", "m.login.2fa.totp", "oathtool --totp"} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(out.String()) {
			t.Errorf("the demo text does not mention %q", want)
		}
	}
	meta, err := http.Get(gw + "/_matrix/client/v1/auth_metadata")
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Issuer string `json:"issuer"`
	}
	json.NewDecoder(meta.Body).Decode(&md)
	meta.Body.Close()
	if meta.StatusCode != 200 || strings.TrimSuffix(md.Issuer, "/") != gw {
		t.Errorf("the demo's OAuth metadata: %d, issuer %q; want 200 and %q", meta.StatusCode, md.Issuer, gw)
	}
	resp, err := http.Get(gw + "/_matrix/client/v3/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var flows struct {
		Flows []struct {
			Type string `json:"type"`
		} `json:"flows"`
	}
	if err := json.Unmarshal(body, &flows); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /login through the demo = %d %s", resp.StatusCode, body)
	}
	types := map[string]bool{}
	for _, f := range flows.Flows {
		types[f.Type] = true
	}
	if !types["m.login.password"] || !types["m.login.sso"] || !types["m.login.token"] {
		t.Errorf("login flows through the demo = %s; want Dendrite's password plus our sso and token", body)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("demo exit code after cancel = %d; stderr:\n%s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30 s of cancel")
	}
}
