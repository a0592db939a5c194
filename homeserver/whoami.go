package homeserver

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// WhoAmI is the owner of an access token. DeviceID is empty for tokens without
// a device (application services).
type WhoAmI struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	IsGuest  bool
}

// maxCacheEntries bounds the WhoAmI cache; past it, expired entries are swept
// and then arbitrary ones dropped.
const maxCacheEntries = 100_000

// tokenKey is the SHA-256 of an access token: the raw token is never a key.
type tokenKey [sha256.Size]byte

func keyOf(accessToken string) tokenKey { return sha256.Sum256([]byte(accessToken)) }

type cacheEntry struct {
	who     WhoAmI
	expires time.Time
}

type whoamiCache struct {
	mu      sync.Mutex
	entries map[tokenKey]cacheEntry
	// forgets counts ForgetToken calls: an answer fetched while a token was
	// being forgotten is not cached, so a logout cannot be undone by a
	// WhoAmI that was in flight.
	forgets uint64
}

// WhoAmI returns the user and device behind accessToken from
// GET /_matrix/client/v3/account/whoami. Successful answers are cached for
// Options.WhoAmITTL under the SHA-256 of the token. Errors: a mautrix.RespError
// (a value, with StatusCode set and the body's fields, e.g. soft_logout, in
// ExtraData) for a 4xx Matrix error such as 401 M_UNKNOWN_TOKEN or
// M_MISSING_TOKEN (an empty accessToken gives M_MISSING_TOKEN without a
// request); an *UnexpectedStatusError for other statuses; wrapped errors for
// transport failures and malformed bodies. Errors are never cached.
func (c *Client) WhoAmI(ctx context.Context, accessToken string) (WhoAmI, error) {
	if accessToken == "" {
		return WhoAmI{}, mautrix.MMissingToken.WithMessage("Missing access token")
	}
	key := keyOf(accessToken)
	caching := c.ttl > 0
	var gen uint64
	if caching {
		c.cache.mu.Lock()
		e, ok := c.cache.entries[key]
		if ok && !c.now().Before(e.expires) {
			delete(c.cache.entries, key)
			ok = false
		}
		gen = c.cache.forgets
		c.cache.mu.Unlock()
		if ok {
			return e.who, nil
		}
	}

	resp, err := c.call(ctx, http.MethodGet, pathWhoAmI, accessToken, nil)
	if err != nil {
		return WhoAmI{}, err
	}
	var body struct {
		UserID   id.UserID   `json:"user_id"`
		DeviceID id.DeviceID `json:"device_id"`
		IsGuest  bool        `json:"is_guest"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		return WhoAmI{}, fmt.Errorf("homeserver: GET %s: decoding answer: %w", pathWhoAmI, err)
	}
	if _, _, err := body.UserID.Parse(); err != nil {
		return WhoAmI{}, fmt.Errorf("homeserver: GET %s: invalid user_id in answer: %w", pathWhoAmI, err)
	}
	who := WhoAmI{UserID: body.UserID, DeviceID: body.DeviceID, IsGuest: body.IsGuest}
	if caching {
		c.cache.put(key, cacheEntry{who: who, expires: c.now().Add(c.ttl)}, gen, c.now())
	}
	return who, nil
}

// put stores e unless a token was forgotten since gen was read.
func (wc *whoamiCache) put(key tokenKey, e cacheEntry, gen uint64, now time.Time) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if wc.forgets != gen {
		return
	}
	if len(wc.entries) >= maxCacheEntries {
		for k, v := range wc.entries {
			if !now.Before(v.expires) {
				delete(wc.entries, k)
			}
		}
		for k := range wc.entries {
			if len(wc.entries) < maxCacheEntries {
				break
			}
			delete(wc.entries, k)
		}
	}
	wc.entries[key] = e
}

// ForgetToken drops accessToken's WhoAmI cache entry, if any; call it when the
// token is logged out.
func (c *Client) ForgetToken(accessToken string) {
	key := keyOf(accessToken)
	c.cache.mu.Lock()
	delete(c.cache.entries, key)
	c.cache.forgets++
	c.cache.mu.Unlock()
}
