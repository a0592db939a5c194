package gateway_test

import (
	"os"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/internal/tesths"
)

// TestBrowserOAuthJSSDK runs tests/browser/oauth.mjs: matrix-js-sdk's own
// OAuth helpers in headless Chromium (discovery, dynamic registration, the
// authorization URL with PKCE, the code grant) sign in a user with 2FA (the
// page asks for the code) and one without; each token syncs through the
// gateway and is, at the homeserver, the device its scope named. A third
// user is registered with prompt=create on the create view (after a taken
// username is refused there) and signed in the same way.
func TestBrowserOAuthJSSDK(t *testing.T) {
	e := oauthEnv(t)
	with := e.enrol("jssdkalice")
	without := tesths.RegisterUser(t, e.hs, "jssdkbob")
	vars := e.browserVars(nil, map[string]string{
		"ISSUER":         oauthIssuer,
		"USER_2FA":       with.Localpart,
		"PASSWORD_2FA":   with.Password,
		"CODE_2FA":       e.peekCode(with, 0),
		"USER_PLAIN":     without.Localpart,
		"PASSWORD_PLAIN": without.Password,
		"NEW_USER":       "jssdknewcarol",
	})
	if dir := os.Getenv("SCREENSHOTS_DIR"); dir != "" {
		vars["SCREENSHOTS_DIR"] = dir
	}
	runBrowser(t, "oauth.mjs", vars)
}
