// Package proxyconf generates the reverse-proxy configuration (nginx, Caddy)
// for split routing: the operator's proxy sends the gateway exactly the
// requests it must see (every route in spec, every guarded endpoint under any
// version prefix and spelling, the homeserver admin APIs) and everything else
// straight to the homeserver. It decides by the normalised path (Rules) and
// by the raw request URI (RawRules), which is what the homeserver reads: an
// escaped, dotted or suffixed spelling of a guarded path goes to the gateway
// even where the proxy's normalised path looks harmless.
package proxyconf
