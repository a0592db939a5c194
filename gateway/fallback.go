package gateway

import "github.com/gorilla/mux"

// fallbackRoutes registers the UIA fallback pages (to be written).
func (g *Gateway) fallbackRoutes(r *mux.Router) {}
