package devidp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// oauthError is a JSON error answer of the token or userinfo endpoint
// (RFC 6749 §5.2, RFC 6750 §3). Its description is ASCII, for developers.
type oauthError struct {
	status      int
	code        string
	description string
	challenge   string // WWW-Authenticate value, if any
}

func (e *oauthError) Error() string { return "devidp: " + e.code + ": " + e.description }

// api adapts a JSON endpoint: answers are never cached, errors are RFC 6749
// JSON, and an internal error's text is logged, never sent.
func (p *Provider) api(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		err := h(w, r)
		if err == nil {
			return
		}
		var oe *oauthError
		if !errors.As(err, &oe) {
			slog.Error("devidp: api", "issuer", p.issuer, "path", r.URL.Path, "err", err)
			oe = &oauthError{status: http.StatusInternalServerError, code: "server_error", description: "internal error"}
		}
		if oe.challenge != "" {
			w.Header().Set("WWW-Authenticate", oe.challenge)
		}
		writeJSON(w, oe.status, map[string]string{"error": oe.code, "error_description": oe.description})
	}
}

func invalidRequest(desc string) error {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", description: desc}
}

func invalidGrant(desc string) error {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_grant", description: desc}
}

func invalidClient(desc string) error {
	return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: desc, challenge: `Basic realm="devidp"`}
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	IDToken     string `json:"id_token"`
	Scope       string `json:"scope"`
}

// token redeems an authorization code (RFC 6749 §4.1.3, PKCE RFC 7636).
// The client is authenticated before the code is touched, so a failed
// authentication does not burn the code; any later failure does.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return invalidRequest("malformed form body")
	}
	form := r.PostForm
	client, err := p.authenticateClient(r, form)
	if err != nil {
		return err
	}
	for _, name := range []string{"grant_type", "code", "redirect_uri", "code_verifier"} {
		if len(form[name]) > 1 {
			return invalidRequest("repeated parameter: " + name)
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
	case "":
		return invalidRequest("grant_type is required")
	default:
		return &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type", description: "only authorization_code is supported"}
	}
	code, redirectURI, verifier := form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier")
	switch {
	case code == "":
		return invalidRequest("code is required")
	case redirectURI == "":
		return invalidRequest("redirect_uri is required")
	case verifier == "":
		return invalidRequest("code_verifier is required (PKCE)")
	}

	now := p.now()
	c, err := p.st.redeemCode(now, code)
	switch {
	case err != nil:
		return invalidGrant("unknown, expired or already used code")
	case c.clientID != client.ID:
		return invalidGrant("code was issued to another client")
	case c.redirectURI != redirectURI:
		return invalidGrant("redirect_uri does not match the authorization request")
	case !pkceMatches(verifier, c.challenge) && !p.currentTweaks().IgnorePKCE:
		return invalidGrant("code_verifier does not match code_challenge")
	}
	ident, ok := p.identity(c.sub)
	if !ok {
		return fmt.Errorf("devidp: token: identity %q vanished", c.sub)
	}
	idToken, err := p.signIDToken(p.idTokenClaims(now, client.ID, ident, c), client.Secret)
	if err != nil {
		return fmt.Errorf("devidp: token: %w", err)
	}
	access := p.st.issueToken(now, code, grant{clientID: client.ID, sub: c.sub, scopes: c.scopes})
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: access,
		TokenType:   "Bearer",
		ExpiresIn:   int(accessTokenTTL / time.Second),
		IDToken:     idToken,
		Scope:       strings.Join(c.scopes, " "),
	})
	return nil
}

// authenticateClient accepts client_secret_basic or client_secret_post,
// not both at once, and compares secrets in constant time.
func (p *Provider) authenticateClient(r *http.Request, form url.Values) (Client, error) {
	user, pass, basic := r.BasicAuth()
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	var id, secret string
	switch {
	case basic && postSecret != "":
		return Client{}, invalidRequest("use a single client authentication method")
	case basic:
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic.
		var err1, err2 error
		id, err1 = url.QueryUnescape(user)
		secret, err2 = url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return Client{}, invalidClient("malformed client credentials")
		}
		if postID != "" && postID != id {
			return Client{}, invalidRequest("client_id does not match the authenticated client")
		}
	case postSecret != "":
		id, secret = postID, postSecret
	default:
		return Client{}, invalidClient("client authentication required")
	}
	c, ok := p.clients[id]
	if !ok || subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return Client{}, invalidClient("client authentication failed")
	}
	return c, nil
}

// pkceMatches checks an S256 code_verifier against its challenge.
func pkceMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for _, c := range []byte(verifier) {
		if !isBase64URL(c) && c != '.' && c != '~' {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(b64(sum[:])), []byte(challenge)) == 1
}

// reservedClaims are never taken from an identity's claims: the provider
// sets them itself.
var reservedClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true, "jti": true,
	"auth_time": true, "nonce": true, "acr": true, "amr": true, "azp": true, "at_hash": true, "c_hash": true,
}

// companionClaims are released with another claim's scope, not by a scope
// of their own (OpenID Connect Core §5.4: the email scope releases email
// and email_verified).
var companionClaims = map[string]string{"email_verified": "email"}

// releasedClaims returns the identity's claims allowed by the scopes: as in
// ProConnect and FranceConnect, each claim name is its own scope.
func releasedClaims(ident Identity, scopes []string) map[string]any {
	claims := map[string]any{"sub": ident.Sub}
	for _, s := range scopes {
		if v, ok := ident.Claims[s]; ok && !reservedClaims[s] && companionClaims[s] == "" {
			claims[s] = v
		}
	}
	for name, scope := range companionClaims {
		if v, ok := ident.Claims[name]; ok && slices.Contains(scopes, scope) {
			claims[name] = v
		}
	}
	return claims
}

func (p *Provider) idTokenClaims(now time.Time, clientID string, ident Identity, c authCode) map[string]any {
	claims := releasedClaims(ident, c.scopes)
	claims["iss"] = p.issuer
	claims["aud"] = clientID
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(idTokenTTL).Unix()
	claims["auth_time"] = c.authTime.Unix()
	claims["nonce"] = c.nonce
	claims["acr"] = p.acr
	if p.kind == KindAidants {
		amr := []string{"pwd"}
		if ident.MFA {
			amr = append(amr, "mfa")
		}
		claims["amr"] = amr
	}
	return claims
}

// signIDToken lets the tweak, if any, change the claims and algorithm, then
// signs. claims is the caller's own map, so the tweak may modify it freely.
func (p *Provider) signIDToken(claims map[string]any, clientSecret string) (string, error) {
	tw := TokenTweak{Claims: claims, Alg: "ES256"}
	if f := p.currentTweaks().IDToken; f != nil {
		f(&tw)
	}
	return p.sign(tw, clientSecret)
}

// sign serialises a tweaked token: Raw as it is, or the claims signed with
// the tweak's algorithm.
func (p *Provider) sign(tw TokenTweak, clientSecret string) (string, error) {
	if tw.Raw != "" {
		return tw.Raw, nil
	}
	payload, err := json.Marshal(tw.Claims)
	if err != nil {
		return "", fmt.Errorf("encode id token claims: %w", err)
	}
	switch tw.Alg {
	case "ES256", "":
		jws, err := p.signer.Sign(payload)
		if err != nil {
			return "", fmt.Errorf("sign id token: %w", err)
		}
		return jws.CompactSerialize()
	case "none":
		return b64([]byte(`{"alg":"none"}`)) + "." + b64(payload) + ".", nil
	case "HS256":
		input := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64(payload)
		mac := hmac.New(sha256.New, []byte(clientSecret))
		mac.Write([]byte(input))
		return input + "." + b64(mac.Sum(nil)), nil
	default:
		return "", fmt.Errorf("sign id token: unknown tweak alg %q", tw.Alg)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		slog.Error("devidp: encode json", "err", err)
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
