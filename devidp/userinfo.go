package devidp

import (
	"fmt"
	"net/http"
	"strings"
)

// userinfo returns the scoped claims of an access token's subject. The token
// is accepted only in the Authorization header: query strings and form
// bodies end up in logs and histories.
func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Query().Has("access_token") {
		return invalidToken("access tokens in the query string are refused")
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			return invalidRequest("malformed form body")
		}
		if r.PostForm.Has("access_token") {
			return invalidToken("send the access token in the Authorization header")
		}
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return invalidToken("bearer access token required")
	}
	g, ok := p.st.lookupToken(p.now(), tok)
	if !ok {
		return invalidToken("unknown or expired access token")
	}
	ident, ok := p.identity(g.sub)
	if !ok {
		return invalidToken("unknown subject")
	}
	claims := releasedClaims(ident, g.scopes)
	f := p.currentTweaks().Userinfo
	if f == nil {
		writeJSON(w, http.StatusOK, claims)
		return nil
	}
	tw := TokenTweak{Claims: claims}
	f(&tw)
	if tw.Alg == "" && tw.Raw == "" {
		writeJSON(w, http.StatusOK, tw.Claims)
		return nil
	}
	jwt, err := p.sign(tw, p.clients[g.clientID].Secret)
	if err != nil {
		return fmt.Errorf("devidp: userinfo: %w", err)
	}
	w.Header().Set("Content-Type", "application/jwt")
	_, _ = w.Write([]byte(jwt))
	return nil
}

func invalidToken(desc string) error {
	return &oauthError{
		status:      http.StatusUnauthorized,
		code:        "invalid_token",
		description: desc,
		challenge:   `Bearer realm="devidp", error="invalid_token", error_description="` + desc + `"`,
	}
}
