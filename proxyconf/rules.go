package proxyconf

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/matrix-2fa/matrix-2fa/spec"
)

// Rule is one class of paths the gateway must see. Pattern is a regular
// expression, anchored, without backslashes or braces, that means the same
// in Go (RE2), PCRE (nginx) and Caddy's path_regexp. It is matched without
// regard to case against the decoded, normalised path (percent-decoded,
// slashes merged, dot segments resolved), which is what nginx's location and
// Caddy's path_regexp see; the request itself goes upstream as the client
// sent it, and the gateway canonicalises it again.
type Rule struct {
	// Why says what the rule is for; it becomes a comment in the file.
	Why string
	// Pattern is the regular expression, without a case-insensitivity flag.
	Pattern string
}

// clientNames are the paths, below any version prefix of the client API, that
// go to the gateway: every endpoint it serves or guards (gateway.go, the
// guarded regexp; spec/protocol.md, "Routes" and "Guarded homeserver
// endpoints"), and anything below them. Under a prefix the gateway does not
// route, it refuses the guarded ones; the rest it passes through.
var clientNames = []string{
	"login",              // login flows and login; login/sso/redirect; login/get_token, login/token (MSC3882)
	"delete_devices",     // guarded
	"devices/[^/]+",      // DELETE /devices/{deviceId} is guarded (PUT, GET pass through the gateway)
	"account/password",   // guarded
	"account/deactivate", // guarded
	"account/3pid",       // POST /account/3pid, /account/3pid/add are guarded (the rest passes through)
	"account/two-factor", // the gateway's own endpoints
	"keys/device_signing/upload",
	"auth/[^/]+/fallback/web", // fallback pages of the gateway's stages (the homeserver's pass through)
	"auth_metadata",           // OAuth 2.0 server metadata (the gateway's when oauth.enabled; else passed through)
}

// clientPattern matches clientNames under any version prefix of one or two
// segments (v3, r0, unstable, api/v1, unstable/org.matrix.msc3882, …), with
// anything below them.
var clientPattern = "^/_matrix/client/[^/]+(?:/[^/]+)?/(?:" + strings.Join(clientNames, "|") + ")(?:/|$)"

// fixedRules are the rules that do not depend on the spec's route list.
var fixedRules = []Rule{
	{Why: "2FA login, sign-in page, fallback pages and every guarded endpoint, under any version prefix", Pattern: clientPattern},
	{Why: "the gateway's self-service page and its files", Pattern: "^/_matrix2fa(?:/|$)"},
	{Why: "homeserver admin APIs: the gateway refuses them (homeserver_admin_api: false)", Pattern: "^/_(?:synapse|dendrite)/admin(?:/|$)"},
}

// Rules returns the rules for routes (spec.Routes()): the fixed ones, then
// one exact rule for each route path they do not already match (such as
// /health). Paths may hold only letters, digits, "-", "_", ".", "~", "/" and
// {name} parameters; Rules returns an error otherwise.
func Rules(routes []spec.Route) ([]Rule, error) {
	rules := append([]Rule(nil), fixedRules...)
	seen := map[string]bool{}
	for _, r := range routes {
		if seen[r.Path] {
			continue
		}
		seen[r.Path] = true
		p, err := pathPattern(r.Path)
		if err != nil {
			return nil, err
		}
		if matchAny(rules, routeSample(r.Path)) {
			continue
		}
		rules = append(rules, Rule{Why: "served by the gateway (spec/openapi.yaml): " + r.Path, Pattern: p})
	}
	return rules, nil
}

// Matcher reports whether a decoded, normalised path goes to the gateway
// under rules, the way nginx and Caddy decide with the generated file.
func Matcher(rules []Rule) func(path string) bool {
	re := regexp.MustCompile(caddyPattern(rules))
	return re.MatchString
}

func matchAny(rules []Rule, path string) bool {
	return Matcher(rules)(path)
}

// caddyPattern is the one case-insensitive regular expression that matches
// any of rules (Caddy allows one path_regexp per matcher).
func caddyPattern(rules []Rule) string {
	alts := make([]string, len(rules))
	for i, r := range rules {
		alts[i] = "(?:" + r.Pattern + ")"
	}
	return "(?i)" + strings.Join(alts, "|")
}

var (
	paramRE    = regexp.MustCompile(`\{[A-Za-z0-9_]+\}`)
	literalRE  = regexp.MustCompile(`^[A-Za-z0-9._~/-]*$`)
	metaEscape = strings.NewReplacer(".", "[.]")
)

// pathPattern turns a route path into an anchored pattern: {name} parameters
// match one segment, a trailing slash is optional.
func pathPattern(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("proxyconf: route path %q does not start with /", p)
	}
	if p == "/" {
		return "^/$", nil
	}
	lits := paramRE.Split(strings.TrimSuffix(p, "/"), -1)
	for i, lit := range lits {
		if !literalRE.MatchString(lit) {
			return "", fmt.Errorf("proxyconf: route path %q has characters a proxy pattern cannot hold", p)
		}
		lits[i] = metaEscape.Replace(lit)
	}
	return "^" + strings.Join(lits, "[^/]+") + "/?$", nil
}

// routeSample is a concrete path for a route path, each parameter "x".
func routeSample(p string) string {
	return paramRE.ReplaceAllString(p, "x")
}
