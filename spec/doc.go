// Package spec embeds openapi.yaml, the description of every route matrix-2fa
// serves itself, and lists those routes (Routes) so tests can hold the router
// to it. The wire contract in prose is protocol.md beside it.
package spec
