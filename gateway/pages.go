package gateway

import "github.com/gorilla/mux"

// extraRoutes registers the pages: the assets, the UIA fallback pages, the
// "Sign in with 2FA" page and the self-service page.
func (g *Gateway) extraRoutes(r *mux.Router) {
	r.Handle(StaticPrefix+"{file}", staticHandler()).Methods("GET")
	g.fallbackRoutes(r)
	g.ssoRoutes(r)
	g.selfServiceRoutes(r)
}
