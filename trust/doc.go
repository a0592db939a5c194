// Package trust decides whether a client may skip the 2FA stage: after a
// user completes one with an access token, the same token from the same user
// agent and address is trusted for a short window (Rocket.Chat's model),
// except for the operations that always ask.
package trust
