// Package notify e-mails users about their second factor: one-time codes, sent at once, and
// notices of changes to their account (2FA enabled or disabled, recovery codes, admin reset,
// lockout), queued and sent in the background so that no request waits on a mail server.
package notify
