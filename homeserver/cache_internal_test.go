package homeserver

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestWhoAmICacheKeyIsHash checks that the cache is keyed by the SHA-256 of
// the token and that the raw token is stored nowhere in it.
func TestWhoAmICacheKeyIsHash(t *testing.T) {
	tests := []struct {
		name  string
		token string
	}{
		{name: "short token", token: "abc"},
		{name: "32-byte token", token: "0123456789abcdef0123456789abcdef"}, // as long as a key
		{name: "synapse-style token", token: "syt_YWxpY2U_xNnXvZsnmNvHjJsDWzHj_0rmsPn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(`{"user_id":"@alice:localhost","device_id":"D"}`))
			}))
			defer srv.Close()
			c, err := New(srv.URL, Options{WhoAmITTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.WhoAmI(t.Context(), tt.token); err != nil {
				t.Fatal(err)
			}
			c.cache.mu.Lock()
			defer c.cache.mu.Unlock()
			if len(c.cache.entries) != 1 {
				t.Fatalf("%d cache entries, want 1", len(c.cache.entries))
			}
			want := sha256.Sum256([]byte(tt.token))
			for k, e := range c.cache.entries {
				if k != tokenKey(want) {
					t.Errorf("cache key %x, want SHA-256 of the token %x", k, want)
				}
				if bytes.Contains(k[:], []byte(tt.token)) {
					t.Errorf("cache key contains the raw token")
				}
				if e.who.UserID != "@alice:localhost" {
					t.Errorf("cached %+v", e.who)
				}
			}
		})
	}
}
