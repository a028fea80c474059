package devidp

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"

	jose "github.com/go-jose/go-jose/v4"

	"aidants/internal/jwtverify"
)

// logout is the end_session endpoint (OpenID Connect RP-Initiated Logout
// 1.0). The provider keeps no session, so logging out only decides where
// the browser goes: back to the client if post_logout_redirect_uri is one it
// registered, else to a page saying the person is logged out.
func (p *Provider) logout(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	if err := r.ParseForm(); err != nil {
		return &pageError{status: http.StatusBadRequest, heading: "Demande refusée", message: "La demande de déconnexion est invalide."}
	}
	target := r.Form.Get("post_logout_redirect_uri")
	if target != "" {
		if c, ok := p.logoutClient(r.Form.Get("client_id"), r.Form.Get("id_token_hint")); ok &&
			slices.Contains(c.PostLogoutRedirectURIs, target) {
			p.redirect(w, r, target, http.StatusSeeOther, url.Values{"state": {r.Form.Get("state")}})
			return nil
		}
	}
	p.render(w, http.StatusOK, "message", messagePage{
		pageHead: p.head("Déconnexion"),
		Message:  "Vous êtes déconnecté(e) du fournisseur d'identité de développement.",
	}, "")
	return nil
}

// logoutClient finds the client a logout request comes from: client_id, or
// the audience of an ID token hint this provider signed. When both are
// given they must agree.
func (p *Provider) logoutClient(clientID, hint string) (Client, bool) {
	if hint != "" {
		aud, err := p.hintAudience(hint)
		if err != nil || (clientID != "" && !slices.Contains(aud, clientID)) {
			return Client{}, false
		}
		if clientID == "" {
			if len(aud) != 1 {
				return Client{}, false
			}
			clientID = aud[0]
		}
	}
	c, ok := p.clients[clientID]
	return c, ok
}

// hintAudience verifies an ID token hint with the provider's key and
// returns its audience. An expired hint is fine: logging out usually
// happens after the ID token's short life.
func (p *Provider) hintAudience(hint string) ([]string, error) {
	tok, err := jwtverify.Parse(hint, jose.ES256)
	if err != nil {
		return nil, fmt.Errorf("parse id_token_hint: %w", err)
	}
	c, err := tok.Verify(&p.key.PublicKey, jwtverify.Expect{Issuer: p.issuer, AllowExpired: true})
	if err != nil {
		return nil, fmt.Errorf("verify id_token_hint: %w", err)
	}
	return c.Audience, nil
}
