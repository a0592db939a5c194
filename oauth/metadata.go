package oauth

import "net/http"

// metadata is the authorization server metadata (RFC 8414) as the Matrix
// spec profiles it.
type metadata struct {
	Issuer                   string   `json:"issuer"`
	AuthorizationEndpoint    string   `json:"authorization_endpoint"`
	TokenEndpoint            string   `json:"token_endpoint"`
	RegistrationEndpoint     string   `json:"registration_endpoint"`
	RevocationEndpoint       string   `json:"revocation_endpoint"`
	ResponseTypes            []string `json:"response_types_supported"`
	ResponseModes            []string `json:"response_modes_supported"`
	GrantTypes               []string `json:"grant_types_supported"`
	CodeChallengeMethods     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	RevocationAuthMethods    []string `json:"revocation_endpoint_auth_methods_supported"`
	AccountManagementURI     string   `json:"account_management_uri,omitempty"`
	AccountManagementActions []string `json:"account_management_actions_supported,omitempty"`
	PromptValues             []string `json:"prompt_values_supported,omitempty"`
}

// Metadata is GET /_matrix/client/v1/auth_metadata (and MSC2965's unstable
// path): where the endpoints are and what they support; prompt=create only
// while the page can register users at the homeserver (Registration).
func (s *Server) Metadata(w http.ResponseWriter, r *http.Request) {
	iss := s.cfg.Issuer
	var prompts []string
	if s.Registration(r.Context()).Possible {
		prompts = []string{"create"}
	}
	writeJSON(w, http.StatusOK, metadata{
		Issuer:                   iss + "/",
		AuthorizationEndpoint:    iss + AuthorizePath,
		TokenEndpoint:            iss + TokenPath,
		RegistrationEndpoint:     iss + RegisterPath,
		RevocationEndpoint:       iss + RevokePath,
		ResponseTypes:            []string{"code"},
		ResponseModes:            []string{"query", "fragment"},
		GrantTypes:               []string{grantCode, grantRefresh},
		CodeChallengeMethods:     []string{"S256"},
		TokenEndpointAuthMethods: []string{"none"},
		RevocationAuthMethods:    []string{"none"},
		AccountManagementURI:     s.cfg.AccountURI,
		AccountManagementActions: s.cfg.AccountActions,
		PromptValues:             prompts,
	})
}
