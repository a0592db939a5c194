// Package pages serves the gateway's HTML pages: the UIA fallback pages for
// the 2FA stages, the SSO-shaped "Sign in with 2FA" page and the self-service
// page, rendered from embedded templates under a strict CSP with CSRF tokens.
package pages
