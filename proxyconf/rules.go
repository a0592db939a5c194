package proxyconf

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/matrix-2fa/matrix-2fa/spec"
)

// Rule is one class of requests the gateway must see. Pattern is a regular
// expression, anchored, without backslashes or braces, that means the same
// in Go (RE2), PCRE (nginx) and Caddy's regexp matchers, and is matched
// without regard to case. A rule from Rules is matched against the decoded,
// normalised path (percent-decoded, slashes merged, dot segments resolved),
// which is what nginx's location and Caddy's path_regexp see; a rule from
// RawRules against the raw request URI (path and query, as the client sent
// it: nginx's $request_uri, Caddy's {http.request.uri}), which is what the
// homeserver gets: the request always goes upstream as the client sent it,
// and the gateway canonicalises it again.
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
	"devices/[^/]+",      // DELETE /devices/{deviceId} is guarded (PUT, GET pass through the gateway)
	"account/password",   // guarded
	"account/deactivate", // guarded
	"account/3pid",       // POST /account/3pid, /account/3pid/add are guarded (the rest passes through)
	"account/two-factor", // the gateway's own endpoints
	"keys/device_signing/upload",
	"auth/[^/]+/fallback/web", // fallback pages of the gateway's stages (the homeserver's pass through)
	"auth_metadata",           // OAuth 2.0 server metadata (the gateway's when oauth.enabled; else passed through)
}

// clientPrefixNames are guarded paths that homeservers match as a prefix,
// with anything at all after them: Synapse registers "/delete_devices" with
// no end anchor, so it serves /delete_devicesX and /delete_devices.json as
// delete_devices (the gateway's guarded regexp has "delete_devices.*").
var clientPrefixNames = []string{"delete_devices"}

// clientPattern matches clientNames under any version prefix of one or two
// segments (v3, r0, unstable, api/v1, unstable/org.matrix.msc3882, …), with
// anything below them, and clientPrefixNames with anything after them.
var clientPattern = "^/_matrix/client/[^/]+(?:/[^/]+)?/(?:(?:" + strings.Join(clientNames, "|") + ")(?:/|$)|" +
	strings.Join(clientPrefixNames, "|") + ")"

// fixedRules are the rules that do not depend on the spec's route list.
var fixedRules = []Rule{
	{Why: "2FA login, sign-in page, fallback pages and every guarded endpoint, under any version prefix", Pattern: clientPattern},
	{Why: "the gateway's self-service page and its files", Pattern: "^/_matrix2fa(?:/|$)"},
	{Why: "homeserver admin APIs: the gateway refuses them (homeserver_admin_api: false)", Pattern: "^/_(?:synapse|dendrite)/admin(?:/|$)"},
}

// rawWords are the words of every guarded path and every path the gateway
// serves under /_matrix/client/ (clientNames, clientPrefixNames) as they
// appear in a raw path: a raw client API path that holds one anywhere, with
// anything before or after it, goes to the gateway. A homeserver reads the
// raw path, and some match it without an end anchor (Synapse's
// delete_devices); the gateway knows which spellings are which.
var rawWords = []string{
	"login", // also every m.login.* stage of auth/{stage}/fallback/web
	"delete_devices",
	"devices/",
	"account/password",
	"account/deactivate",
	"account/3pid",
	"account/two-factor",
	"keys/device_signing",
	"fallback/web",
	"auth_metadata",
}

// oddEscape matches a percent-escape that could change what a path means to
// one reader and not another: an escaped letter, digit, "-", "_", ".", "/",
// backslash, ";", "?", "#", "%", space, control character or non-ASCII byte
// (and anything malformed). The escapes clients put in room, user and event
// IDs and the like pass: ! " $ & ' ( ) * + , : < = > @ [ ] ^ ` { | } ~
// (%21 %22 %24 %26-%2C %3A %3C-%3E %40 %5B %5D %5E %60 %7B-%7E).
const oddEscape = "%(?:[^2-7]|2[^1246-9a-c]|3[^ac-e]|4[^0]|5[^bde]|6[^0]|7[^b-e])"

// rawRules are the rules for the raw request URI. [^?]* keeps each to the
// path (a query is the homeserver's business).
var rawRules = []Rule{
	{Why: "a guarded word anywhere in a client API path, in any case, with anything after it (a homeserver reads the raw path, Synapse delete_devices with no end anchor)",
		Pattern: "^/_matrix/client/[^?]*(?:" + strings.Join(rawWords, "|") + ")"},
	{Why: "a client API path with a percent-escape that may spell a guarded word (an escaped letter, digit, - _ . / or the like; the escapes of room and user IDs pass)",
		Pattern: "^/_matrix/client/[^?]*" + oddEscape},
	{Why: "such an escape in the first two segments (another spelling of /_matrix/client or of an admin API)",
		Pattern: "^/[^/?]*(?:/[^/?]*)?" + oddEscape},
	{Why: "an empty or dot segment, .. or ./ anywhere, or an escaped dot, slash, backslash or percent sign: the path may resolve to another one",
		Pattern: "^[^?]*(?://|[.][.]|[.]/|/[.](?:[?]|$)|%2e|%2f|%5c|%25)"},
	{Why: "homeserver admin APIs, with anything after the prefix", Pattern: "^/_(?:synapse|dendrite)/admin"},
}

// RawRules returns the rules for the raw request URI: a request goes to the
// gateway when its normalised path matches one of Rules or its raw URI one of
// these. Together they send the gateway every request a homeserver could read
// as one of its or a guarded endpoint, however it is spelled: the gateway
// canonicalises the path, refuses the spellings it must, and passes the
// harmless ones through.
func RawRules() []Rule { return append([]Rule(nil), rawRules...) }

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

// Matcher reports whether a string matches any of rules (without regard to
// case), the way nginx and Caddy decide with the generated file: rules from
// Rules against the decoded, normalised path, from RawRules against the raw
// request URI. Decider puts the two together.
func Matcher(rules []Rule) func(s string) bool {
	re := regexp.MustCompile(caddyPattern(rules))
	return re.MatchString
}

// Decider reports whether the generated file sends a request, by its raw
// request URI (path and query, as sent), to the gateway under rules (from
// Rules) and RawRules: the normalised path (percent-decoded, slashes merged,
// dot segments resolved, as nginx and Caddy make it) matches rules, or the raw
// URI matches RawRules. A path that does not decode (which nginx and Caddy
// refuse) counts as the gateway's: it never reaches the homeserver.
func Decider(rules []Rule) func(requestURI string) bool {
	normal, raw := Matcher(rules), Matcher(rawRules)
	return func(uri string) bool {
		p, _, _ := strings.Cut(uri, "?")
		decoded, err := url.PathUnescape(p)
		if err != nil {
			return true
		}
		return raw(uri) || normal(path.Clean("/"+decoded))
	}
}

func matchAny(rules []Rule, path string) bool {
	return Matcher(rules)(path)
}

// caddyPattern is the one case-insensitive regular expression that matches
// any of rules (Caddy allows one path_regexp per matcher).
func caddyPattern(rules []Rule) string {
	return "(?i)" + alternation(rules)
}

// alternation is the one regular expression that matches any of rules. nginx
// gets it too: one match per request, not one per rule, on every request
// that passes through.
func alternation(rules []Rule) string {
	alts := make([]string, len(rules))
	for i, r := range rules {
		alts[i] = "(?:" + r.Pattern + ")"
	}
	return strings.Join(alts, "|")
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
