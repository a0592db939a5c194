package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/admin"
	"github.com/matrix-2fa/matrix-2fa/trust"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTemplateRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{"defaults with a homeserver", func(c *Config) { c.Homeserver = "http://127.0.0.1:8008" }},
		{"data dir and listen", func(c *Config) {
			c.Homeserver = "https://matrix.example.org"
			c.DataDir = "/var/lib/matrix-2fa"
			c.Listen = "[::1]:9000"
		}},
		{"strings that need quoting", func(c *Config) {
			c.Homeserver = "http://127.0.0.1:8008"
			c.DataDir = `C:\data "two" fa`
			c.Login.SSOProviderName = "Sign in: \"2FA\"\t#1"
			c.TwoFactor.Issuer = "Example # Corp"
		}},
		{"explicit database, key file and key", func(c *Config) {
			c.Homeserver = "http://127.0.0.1:8008"
			c.Database = "/srv/db/2fa.sqlite"
			c.KeyFile = "/etc/matrix-2fa/key"
			c.Key = account.EncodeKey(account.NewKey())
		}},
		{"redirect allowlist", func(c *Config) {
			c.Homeserver = "http://127.0.0.1:8008"
			c.Login.RedirectAllowlist = []string{"https://app.element.io/", "https://chat.example.org/#/"}
		}},
		{"admin and provider", func(c *Config) {
			c.Homeserver = "http://127.0.0.1:8008"
			c.Admin = admin.Config{Enabled: true, HomeserverAdmins: true, Admins: []string{"@root:example.org"},
				Scoped:      []admin.ScopedAdmin{{User: "@lead:example.org", Users: []string{"@team-*:example.org", "@*:team.example.org"}}},
				TokenSHA256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"}
			c.Provider.SecretSHA256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
		}},
		{"trusted clients", func(c *Config) {
			c.Homeserver = "http://127.0.0.1:8008"
			c.TrustedClients = trust.Config{Window: 30 * time.Minute, AlwaysAsk: []string{"deactivate", "disable_2fa"}}
		}},
		{"non-default durations and numbers", func(c *Config) {
			c.Homeserver = "http://127.0.0.1:8008"
			c.Login.SessionTTL = 90 * time.Second
			c.UIA.SessionTTL = 2 * time.Hour
			c.WhoAmITTL = 0
			c.TwoFactor.Digits = 8
			c.TwoFactor.Argon2.MemoryKiB = 64 * 1024
			c.Log = Log{Level: "debug", Format: "json"}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := Default()
			tc.modify(&want)
			path := writeFile(t, string(Template(want)))
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load(template): %v\n%s", err, Template(want))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("template does not round-trip:\n got %+v\nwant %+v", got, want)
			}
			if errs := got.Validate(); len(errs) != 0 {
				t.Errorf("Validate(template) = %v, want no problems", errs)
			}
		})
	}
}

func TestTemplateWithoutHomeserverFailsOnlyOnHomeserver(t *testing.T) {
	got, err := Load(writeFile(t, string(Template(Default()))))
	if err != nil {
		t.Fatal(err)
	}
	errs := got.Validate()
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "homeserver:") {
		t.Errorf("Validate = %v, want exactly the homeserver problem", errs)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string // substring; empty means success
		check   func(t *testing.T, c Config)
	}{
		{name: "empty file is defaults", body: "", check: func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("got %+v, want Default()", c)
			}
		}},
		{name: "comments only is defaults", body: "# nothing here\n", check: func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("got %+v, want Default()", c)
			}
		}},
		{name: "unknown top-level key", body: "homeserver: http://x\nlisten_addr: 1.2.3.4:5\n", wantErr: "listen_addr"},
		{name: "unknown nested key", body: "two_factor:\n  digitz: 8\n", wantErr: "digitz"},
		{name: "bad YAML", body: "listen: [\n", wantErr: "config:"},
		{name: "bad duration", body: "uia:\n  session_ttl: soon\n", wantErr: "line 2"},
		{name: "durations parse", body: "login:\n  session_ttl: 90s\n  token_ttl: 2m30s\nwhoami_cache_ttl: 1m\n" +
			"two_factor:\n  lockout_window: 1h\n", check: func(t *testing.T, c Config) {
			if c.Login.SessionTTL != 90*time.Second || c.Login.TokenTTL != 150*time.Second ||
				c.WhoAmITTL != time.Minute || c.TwoFactor.LockoutWindow != time.Hour {
				t.Errorf("durations = %s %s %s %s", c.Login.SessionTTL, c.Login.TokenTTL, c.WhoAmITTL, c.TwoFactor.LockoutWindow)
			}
		}},
		{name: "partial file keeps other defaults", body: "homeserver: http://hs:8008\ntwo_factor:\n  digits: 8\n",
			check: func(t *testing.T, c Config) {
				want := Default()
				want.Homeserver = "http://hs:8008"
				want.TwoFactor.Digits = 8
				if !reflect.DeepEqual(c, want) {
					t.Errorf("got %+v\nwant %+v", c, want)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(writeFile(t, tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tc.check(t, c)
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	c, err := Load("")
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Fatalf(`Load("") = %+v, %v; want defaults`, c, err)
	}
}

func TestValidate(t *testing.T) {
	valid := func() Config {
		c := Default()
		c.Homeserver = "http://127.0.0.1:8008"
		return c
	}
	tests := []struct {
		name     string
		modify   func(*Config)
		wantKeys []string // each error must start with "key:", in this order
	}{
		{"valid", func(*Config) {}, nil},
		{"three problems at once", func(c *Config) {
			c.Homeserver = "ftp://example.org"
			c.Listen = "8009"
			c.Log.Level = "loud"
		}, []string{"homeserver", "listen", "log.level"}},
		{"missing homeserver", func(c *Config) { c.Homeserver = "" }, []string{"homeserver"}},
		{"homeserver without host", func(c *Config) { c.Homeserver = "http://" }, []string{"homeserver"}},
		{"bad public base URL", func(c *Config) { c.PublicBaseURL = "example.org" }, []string{"public_base_url"}},
		{"no data dir", func(c *Config) { c.DataDir = "" }, []string{"data_dir"}},
		{"no data dir but explicit paths", func(c *Config) {
			c.DataDir, c.Database, c.KeyFile = "", "/tmp/x.db", "/tmp/x.key"
		}, nil},
		{"bad synchronous", func(c *Config) { c.SQLiteSynchronous = "OFF" }, []string{"sqlite_synchronous"}},
		{"lower-case synchronous", func(c *Config) { c.SQLiteSynchronous = "full" }, nil},
		{"bad inline key", func(c *Config) { c.Key = "c2hvcnQ=" }, []string{"key"}},
		{"bad two_factor", func(c *Config) { c.TwoFactor.Digits = 7; c.TwoFactor.Skew = 9 },
			[]string{"two_factor", "two_factor"}},
		{"login and uia ranges", func(c *Config) {
			c.Login.SessionTTL = time.Second
			c.Login.TokenTTL = time.Hour
			c.Login.SSOProviderID = "a/b"
			c.Login.SSOProviderName = ""
			c.Login.RedirectAllowlist = []string{"/relative"}
			c.UIA.SessionTTL = time.Second
			c.WhoAmITTL = -time.Second
		}, []string{"login.session_ttl", "login.token_ttl", "login.sso_provider_id", "login.sso_provider_name",
			"login.redirect_allowlist", "uia.session_ttl", "whoami_cache_ttl"}},
		{"remember and bot tokens off", func(c *Config) { c.RememberBrowser.TTL = 0; c.BotTokens.MaxPerUser = 0 }, nil},
		{"remember and bot token ranges", func(c *Config) { c.RememberBrowser.TTL = time.Minute; c.BotTokens.MaxPerUser = -1 },
			[]string{"remember_browser.ttl", "bot_tokens.max_per_user"}},
		{"remember too long", func(c *Config) { c.RememberBrowser.TTL = 400 * 24 * time.Hour }, []string{"remember_browser.ttl"}},
		{"bad log format", func(c *Config) { c.Log.Format = "xml" }, []string{"log.format"}},
		{"versions cache off", func(c *Config) { c.VersionsCacheTTL = 0 }, nil},
		{"versions cache too long", func(c *Config) { c.VersionsCacheTTL = time.Minute }, []string{"versions_cache_ttl"}},
		{"versions cache negative", func(c *Config) { c.VersionsCacheTTL = -time.Second }, []string{"versions_cache_ttl"}},
		{"bad trusted clients", func(c *Config) {
			c.TrustedClients.Window = -time.Second
			c.TrustedClients.AlwaysAsk = []string{"disable_2fa", "everything"}
		}, []string{"trusted_clients.window", "trusted_clients.always_ask"}},
		{"trusted clients off, asking for nothing", func(c *Config) {
			c.TrustedClients.Window, c.TrustedClients.AlwaysAsk = 0, nil
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.modify(&c)
			errs := c.Validate()
			if len(errs) != len(tc.wantKeys) {
				t.Fatalf("Validate = %d problems %v, want %d %v", len(errs), errs, len(tc.wantKeys), tc.wantKeys)
			}
			for i, key := range tc.wantKeys {
				if !strings.HasPrefix(errs[i].Error(), key+":") {
					t.Errorf("problem %d = %q, want it to name %q", i, errs[i], key)
				}
			}
		})
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		name            string
		c               Config
		wantDB, wantKey string
	}{
		{"from data dir", Config{DataDir: "/d"}, "/d/matrix-2fa.db", "/d/secret.key"},
		{"explicit", Config{DataDir: "/d", Database: "/x/db", KeyFile: "/y/k"}, "/x/db", "/y/k"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.DatabasePath(); got != tc.wantDB {
				t.Errorf("DatabasePath = %q, want %q", got, tc.wantDB)
			}
			if got := tc.c.KeyFilePath(); got != tc.wantKey {
				t.Errorf("KeyFilePath = %q, want %q", got, tc.wantKey)
			}
		})
	}
}
