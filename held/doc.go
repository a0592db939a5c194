// Package held keeps homeserver logins that wait for something: a password
// login waiting for its second factor, a sign-in page login waiting for its
// code or its login token. It seals them, releases them once, and logs out
// every one that ends unused (dropped, expired, retired, swept).
package held
