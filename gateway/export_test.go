package gateway

import "net/http"

// MayBeOurs is the cheap screen, for the external tests.
var MayBeOurs = mayBeOurs

// RoutedPastScreen reports whether the route table or the guarded pattern
// (the screen skipped) would route r to the gateway's own handler or refuse
// it; r may be changed (a guarded path's canonical spelling).
func (g *Gateway) RoutedPastScreen(r *http.Request) bool {
	_, _, routed, refused := g.routeAll(r)
	return routed || refused != nil
}
