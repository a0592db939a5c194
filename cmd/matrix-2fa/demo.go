package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
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

	cfg := config.Default()
	cfg.Homeserver, cfg.Listen, cfg.DataDir = hs.URL, *listen, filepath.Join(dataDir, "data")
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

Press Ctrl-C to stop; the homeserver and all data are deleted.
`))
