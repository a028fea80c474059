package devidp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
)

// discoveryDoc is the OpenID Provider Metadata (OpenID Connect Discovery
// 1.0 §3, RFC 8414, RFC 9207).
type discoveryDoc struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	UserinfoEndpoint                           string   `json:"userinfo_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	EndSessionEndpoint                         string   `json:"end_session_endpoint"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	SubjectTypesSupported                      []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported           []string `json:"id_token_signing_alg_values_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ClaimsSupported                            []string `json:"claims_supported"`
	ACRValuesSupported                         []string `json:"acr_values_supported,omitempty"`
	PromptValuesSupported                      []string `json:"prompt_values_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

// Claims each kind of provider is known for; identities may add others.
var (
	aidantsClaims       = []string{"given_name", "usual_name", "email", "uid", "siret", "siren", "phone"}
	franceConnectClaims = []string{"given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry", "email", "preferred_username"}
	protocolClaims      = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr"}
)

func (p *Provider) discoveryDocument() ([]byte, error) {
	known := aidantsClaims
	if p.kind == KindFranceConnect {
		known = franceConnectClaims
	}
	scoped := slices.Clone(known)
	var companions []string
	for _, ident := range p.identities {
		for name := range ident.Claims {
			switch {
			case reservedClaims[name]:
			case companionClaims[name] != "":
				if !slices.Contains(companions, name) {
					companions = append(companions, name)
				}
			case !slices.Contains(scoped, name):
				scoped = append(scoped, name)
			}
		}
	}
	slices.Sort(scoped)
	slices.Sort(companions)
	doc := discoveryDoc{
		Issuer:                                     p.issuer,
		AuthorizationEndpoint:                      p.endpoint("/authorize"),
		TokenEndpoint:                              p.endpoint("/token"),
		UserinfoEndpoint:                           p.endpoint("/userinfo"),
		JWKSURI:                                    p.endpoint("/jwks"),
		EndSessionEndpoint:                         p.endpoint("/logout"),
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code"},
		SubjectTypesSupported:                      []string{"public"},
		IDTokenSigningAlgValuesSupported:           []string{"ES256"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		TokenEndpointAuthMethodsSupported:          []string{"client_secret_basic", "client_secret_post"},
		ScopesSupported:                            append([]string{"openid"}, scoped...),
		ClaimsSupported:                            slices.Concat(protocolClaims, scoped, companions),
		PromptValuesSupported:                      []string{"login", "consent"},
		AuthorizationResponseIssParameterSupported: true,
	}
	if p.kind == KindFranceConnect {
		doc.ACRValuesSupported = []string{p.acr}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("devidp: discovery document: %w", err)
	}
	return b, nil
}

func (p *Provider) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	f := p.currentTweaks().Discovery
	if f == nil {
		serveJSONBytes(w, p.discovery)
		return
	}
	var doc map[string]any
	if err := json.Unmarshal(p.discovery, &doc); err != nil {
		http.Error(w, "discovery document", http.StatusInternalServerError)
		return
	}
	f(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		http.Error(w, "discovery document", http.StatusInternalServerError)
		return
	}
	serveJSONBytes(w, b)
}

func (p *Provider) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	if f := p.currentTweaks().JWKS; f != nil {
		serveJSONBytes(w, f(slices.Clone(p.jwks)))
		return
	}
	serveJSONBytes(w, p.jwks)
}

func serveJSONBytes(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	// The key changes at every start: clients must not keep it long.
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}
