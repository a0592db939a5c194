package gateway

import "github.com/gorilla/mux"

// selfServiceRoutes registers the self-service 2FA page (to be written).
func (g *Gateway) selfServiceRoutes(r *mux.Router) {}
