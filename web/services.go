package web

import (
	"net/http"

	"aidants/mandate"
	"aidants/provider"
)

// servicesDocPage tells a public service how to connect to this instance's
// OpenID provider: the discovery document's service_documentation. It
// summarises docs/SERVICES.md, with this instance's own addresses.
type servicesDocPage struct {
	Page
	Issuer, Discovery, Authorize, Token, UserInfo, JWKS, Logout string
	Scopes, Claims, ACRs, Prompts, AuthMethods, SigningAlgs     []string
	Demarches                                                   []mandate.Demarche
	Low, Substantial                                            string
}

// servicesDocumentation serves the page named by service_documentation.
func (s *Server) servicesDocumentation(w http.ResponseWriter, r *http.Request) error {
	if s.provider == nil {
		return errNotFound
	}
	d := s.provider.Discovery()
	str := func(name string) string { v, _ := d[name].(string); return v }
	list := func(name string) []string { v, _ := d[name].([]string); return v }
	s.render(w, r, http.StatusOK, "services-documentation", &servicesDocPage{Page: s.base(r),
		Issuer: str("issuer"), Discovery: str("issuer") + "/.well-known/openid-configuration", Authorize: str("authorization_endpoint"),
		Token: str("token_endpoint"), UserInfo: str("userinfo_endpoint"), JWKS: str("jwks_uri"), Logout: str("end_session_endpoint"),
		Scopes: list("scopes_supported"), Claims: list("claims_supported"), ACRs: list("acr_values_supported"),
		Prompts: list("prompt_values_supported"), AuthMethods: list("token_endpoint_auth_methods_supported"),
		SigningAlgs: list("id_token_signing_alg_values_supported"), Demarches: mandate.Demarches,
		Low: provider.ACRLow, Substantial: provider.ACRSubstantial})
	return nil
}
