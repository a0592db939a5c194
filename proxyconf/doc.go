// Package proxyconf generates the reverse-proxy configuration (nginx, Caddy)
// for split routing: the operator's proxy sends the gateway exactly the paths
// it must see (every route in spec, every guarded endpoint under any version
// prefix and spelling, the homeserver admin APIs) and everything else straight
// to the homeserver.
package proxyconf
