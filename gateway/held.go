package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// Held login responses (the homeserver's access token, waiting for the second
// factor or for a loginToken to be redeemed) are kept in UIA sessions whose
// path is one of these markers, sealed with the secret box for their user.
const (
	heldLoginPath = "/login"
	heldTokenPath = "/login/token"
)

func heldOwner(userID string) string { return "held-login:" + userID }

// sealHeld encrypts a held login response: key ID, a NUL, the ciphertext.
func (g *Gateway) sealHeld(userID string, body []byte) ([]byte, error) {
	sealed, err := g.box.Seal(heldOwner(userID), body)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(g.box.KeyID()), 0), sealed...), nil
}

func (g *Gateway) openHeld(userID string, data []byte) ([]byte, error) {
	keyID, sealed, ok := bytes.Cut(data, []byte{0})
	if !ok {
		return nil, errors.New("gateway: malformed held login")
	}
	return g.box.Open(heldOwner(userID), string(keyID), sealed)
}

// discardHeld logs the held access token out upstream, so a login that was
// abandoned, expired or locked out leaves no usable token behind.
func (g *Gateway) discardHeld(ctx context.Context, s storage.UIASession) error {
	if len(s.Data) == 0 {
		return nil
	}
	body, err := g.openHeld(s.UserID, s.Data)
	if err != nil {
		return err
	}
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.AccessToken == "" {
		return fmt.Errorf("gateway: held login has no access token")
	}
	return g.hs.Logout(ctx, resp.AccessToken)
}

// Sweep deletes expired sessions and logs out the held logins among them.
func (g *Gateway) Sweep(ctx context.Context) {
	for {
		expired, err := g.store.ExpiredSessions(ctx, g.now(), 100)
		if err != nil {
			g.log.WithError(err).Error("listing expired sessions")
			return
		}
		for _, s := range expired {
			taken, err := g.store.TakeSession(ctx, s.ID)
			if err != nil {
				continue // another replica or request took it
			}
			if taken.Path == heldLoginPath || taken.Path == heldTokenPath {
				if err := g.discardHeld(ctx, taken); err != nil {
					g.log.WithError(err).WithField("user_id", taken.UserID).Error("logging out an expired held login")
				} else {
					g.log.WithField("user_id", taken.UserID).Info("expired held login logged out upstream")
				}
			}
		}
		if len(expired) < 100 {
			return
		}
	}
}
