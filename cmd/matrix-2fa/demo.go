package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/matrix-2fa/matrix-2fa/internal/config"
	"github.com/matrix-2fa/matrix-2fa/internal/dendrite"
)

// demo builds the test homeserver if needed, starts it and the gateway on
// loopback with a throwaway data directory, registers a user and prints what
// to try. Everything is removed when it stops.
func (c *cli) demo(ctx context.Context, args []string) int {
	fset := c.newFlagSet("demo", "demo [--listen ADDR]")
	listen := fset.String("listen", "127.0.0.1:8009", "address of the gateway")
	rest, code, ok := parseArgs(fset, args)
	if !ok {
		return code
	}
	if !c.wantArgs(fset, rest) {
		return exitUsage
	}
	root, err := dendrite.RepoRoot()
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa demo: run it inside the matrix-2fa source tree: %v\n", err)
		return exitError
	}
	fmt.Fprintln(c.stdout, "Building the test homeserver (Dendrite) if needed; the first time takes a couple of minutes…")
	bin, err := dendrite.Build(ctx, root)
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa demo: building Dendrite: %v\n", err)
		return exitError
	}
	hs, err := dendrite.Start(ctx, dendrite.Options{BinDir: bin, LogLevel: "warn"})
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa demo: starting Dendrite: %v\n", err)
		return exitError
	}
	defer hs.Stop()
	password := randomPassword()
	user, err := hs.Register(ctx, "alice", password)
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa demo: registering a user: %v\n", err)
		return exitError
	}
	dataDir, err := os.MkdirTemp("", "matrix-2fa-demo-")
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa demo: %v\n", err)
		return exitError
	}
	defer os.RemoveAll(dataDir)

	addr, err := fixedPort(*listen)
	if err != nil {
		fmt.Fprintf(c.stderr, "matrix-2fa demo: %v\n", err)
		return exitUsage
	}
	cfg := config.Default()
	cfg.Homeserver, cfg.Listen, cfg.DataDir = hs.URL, addr, filepath.Join(dataDir, "data")
	// The OAuth 2.0 API is on (Element X and other OAuth clients sign in
	// with 2FA); its issuer is the gateway's own address.
	cfg.PublicBaseURL, cfg.OAuth.Enabled = "http://"+addr, true
	cfg.Log.Level = "warn"
	if errs := cfg.Validate(); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintf(c.stderr, "matrix-2fa demo: %v\n", e)
		}
		return exitUsage
	}
	return c.serveConfig(ctx, cfg, newLogger(cfg.Log, c.stderr), func(addr string) {
		demoText.Execute(c.stdout, map[string]string{
			"GW": "http://" + addr, "HS": hs.URL, "User": user.UserID, "Local": user.Localpart, "Password": password, "Token": user.AccessToken,
		})
	})
}

// fixedPort is listen with port 0 replaced by a free port (the OAuth issuer
// must name the address before the gateway listens).
func fixedPort(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port != "0" {
		return listen, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var demoText = template.Must(template.New("demo").Funcs(template.FuncMap{"upper": strings.ToUpper}).Parse(`
matrix-2fa is running at {{.GW}} in front of a throwaway Dendrite at {{.HS}}.

  user      {{.User}}
  password  {{.Password}}

Try it:

 1. In a browser, open {{.GW}}/_matrix2fa/ , sign in as {{.Local}}, scan the QR code
    with an authenticator app (or copy the secret), confirm with a code, keep the recovery codes.
    Or by API (needs curl and jq; oathtool makes codes from the secret):

      T={{.Token}}
      S=$(curl -s -XPOST {{.GW}}/_matrix/client/v3/account/two-factor/totp -H "Authorization: Bearer $T" -d '{}' | jq -r .session)
      SECRET=$(curl -s -XPOST {{.GW}}/_matrix/client/v3/account/two-factor/totp -H "Authorization: Bearer $T" \
        -d '{"auth":{"type":"m.login.password","identifier":{"type":"m.id.user","user":"{{.Local}}"},"password":"{{.Password}}","session":"'$S'"}}' | jq -r .secret)
      curl -s -XPOST {{.GW}}/_matrix/client/v3/account/two-factor/totp/confirm -H "Authorization: Bearer $T" \
        -d '{"code":"'$(oathtool --totp -b $SECRET)'"}'

 2. Log in: the password alone now answers 401 with a session; send a code to finish.
    Each code works once: if you just used the current one, wait for the next (30 s).

      curl -s -XPOST {{.GW}}/_matrix/client/v3/login \
        -d '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"{{.Local}}"},"password":"{{.Password}}"}'
      curl -s -XPOST {{.GW}}/_matrix/client/v3/login \
        -d '{"auth":{"type":"m.login.2fa.totp","session":"SESSION","code":"'$(oathtool --totp -b $SECRET)'"}}'

 3. Point Element (or any client) at {{.GW}} as the homeserver: "Continue with two-factor sign-in" is offered,
    and deleting a device asks for the code through the fallback page before the password.

 4. OAuth clients (Element X, matrix-js-sdk's OAuth helpers) find the gateway as the authorization server:

      curl -s {{.GW}}/_matrix/client/v1/auth_metadata | jq .

Press Ctrl-C to stop; the homeserver and all data are deleted.
`))
