// Package ratelimit limits requests per client: who the client is (the
// connection's address, or the address a trusted reverse proxy names), and a
// token bucket per address (per /64 for IPv6), with a bounded number of addresses kept.
package ratelimit
