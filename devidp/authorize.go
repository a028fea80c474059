package devidp

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// maxParamLen bounds state and nonce, which the provider keeps in memory.
const maxParamLen = 512

// maxFormBytes bounds the body of every POST the provider reads.
const maxFormBytes = 64 << 10

// authorize checks an authorization request and shows the identity picker.
// The client and its redirect_uri are checked first: until both are known
// good, errors are pages, never redirects (RFC 6749 §4.1.2.1).
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	clientID, ok := single(q, "client_id")
	client, known := p.clients[clientID]
	if !ok || !known {
		return &pageError{
			status:  http.StatusBadRequest,
			heading: "Demande refusée",
			message: "L'application qui vous envoie ici est inconnue de ce fournisseur d'identité. Aucune redirection n'a été faite.",
		}
	}
	redirectURI, ok := single(q, "redirect_uri")
	if !ok || !slices.Contains(client.RedirectURIs, redirectURI) {
		return &pageError{
			status:  http.StatusBadRequest,
			heading: "Demande refusée",
			message: "L'adresse de retour demandée n'est pas enregistrée pour cette application. Aucune redirection n'a été faite.",
		}
	}
	state, _ := single(q, "state")
	if len(state) > maxParamLen {
		state = ""
	}
	req, code, desc := parseAuthRequest(q)
	if code != "" {
		return &redirectError{redirectURI: redirectURI, state: state, code: code, description: desc}
	}
	req.clientID, req.redirectURI = client.ID, redirectURI
	id := p.st.addPending(p.now(), req)

	data := pickPage{
		pageHead:  p.head("Connexion"),
		ClientID:  client.ID,
		Action:    p.basePath + "/authorize",
		RequestID: id,
	}
	for _, ident := range p.identities {
		data.Identities = append(data.Identities, pickIdentity{Sub: ident.Sub, Label: ident.Label})
	}
	p.render(w, http.StatusOK, "pick", data, origin(redirectURI))
	return nil
}

// parseAuthRequest checks the parameters of an authorization request other
// than client_id and redirect_uri. On failure it returns an OAuth error code
// and an ASCII description (RFC 6749 restricts error_description to ASCII).
func parseAuthRequest(q url.Values) (req pendingAuth, code, desc string) {
	for _, name := range []string{"response_type", "scope", "state", "nonce", "code_challenge",
		"code_challenge_method", "prompt", "max_age", "acr_values", "response_mode"} {
		if len(q[name]) > 1 {
			return req, "invalid_request", "repeated parameter: " + name
		}
	}
	if q.Has("request") {
		return req, "request_not_supported", "request objects are not supported"
	}
	if q.Has("request_uri") {
		return req, "request_uri_not_supported", "request_uri is not supported"
	}
	if q.Get("response_type") != "code" {
		return req, "unsupported_response_type", "response_type must be code"
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		return req, "invalid_request", "response_mode must be query"
	}
	scopes := strings.Fields(q.Get("scope"))
	if !slices.Contains(scopes, "openid") {
		return req, "invalid_scope", "scope must contain openid"
	}
	state, nonce := q.Get("state"), q.Get("nonce")
	switch {
	case state == "":
		return req, "invalid_request", "state is required"
	case nonce == "":
		return req, "invalid_request", "nonce is required"
	case len(state) > maxParamLen || len(nonce) > maxParamLen:
		return req, "invalid_request", "state or nonce too long"
	}
	challenge := q.Get("code_challenge")
	switch {
	case challenge == "":
		return req, "invalid_request", "code_challenge is required (PKCE)"
	case q.Get("code_challenge_method") != "S256":
		return req, "invalid_request", "code_challenge_method must be S256"
	case !validS256Challenge(challenge):
		return req, "invalid_request", "code_challenge is not a base64url SHA-256 digest"
	}
	if ma := q.Get("max_age"); ma != "" {
		// Every pick is a fresh authentication, so any max_age is met.
		if n, err := strconv.Atoi(ma); err != nil || n < 0 {
			return req, "invalid_request", "max_age must be a non-negative integer"
		}
	}
	// prompt=login is met trivially: every pick is a fresh authentication.
	if slices.Contains(strings.Fields(q.Get("prompt")), "none") {
		return req, "login_required", "this provider always shows its login page"
	}
	return pendingAuth{state: state, nonce: nonce, challenge: challenge, scopes: scopes}, "", ""
}

// pick handles the identity picker's form: it consumes the pending request
// and redirects back with a code, or with access_denied on "Annuler".
func (p *Provider) pick(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return &pageError{status: http.StatusBadRequest, heading: "Demande refusée", message: "Le formulaire envoyé est invalide."}
	}
	cancel := r.PostForm.Get("cancel") != ""
	sub := r.PostForm.Get("identity")
	if _, ok := p.identity(sub); !ok && !cancel {
		return &pageError{status: http.StatusBadRequest, heading: "Demande refusée", message: "Cette identité n'existe pas."}
	}
	now := p.now()
	req, ok := p.st.takePending(now, r.PostForm.Get("request"))
	if !ok {
		return &pageError{
			status:  http.StatusBadRequest,
			heading: "Demande expirée",
			message: "Cette demande de connexion a déjà été utilisée ou a expiré. Recommencez depuis l'application.",
		}
	}
	if cancel {
		return &redirectError{redirectURI: req.redirectURI, state: req.state, code: "access_denied", description: "the user cancelled the login"}
	}
	code := p.st.addCode(now, authCode{
		clientID:    req.clientID,
		redirectURI: req.redirectURI,
		sub:         sub,
		nonce:       req.nonce,
		challenge:   req.challenge,
		scopes:      req.scopes,
		authTime:    now,
	})
	answer := url.Values{
		"code":  {code},
		"state": {req.state},
		"iss":   {p.issuer},
	}
	if f := p.currentTweaks().Response; f != nil {
		f(answer)
	}
	p.redirect(w, r, req.redirectURI, http.StatusSeeOther, answer)
	return nil
}

// single returns the only value of a parameter; a missing, empty or
// repeated parameter is not ok.
func single(q url.Values, name string) (string, bool) {
	vs := q[name]
	if len(vs) != 1 || vs[0] == "" {
		return "", false
	}
	return vs[0], true
}

// validS256Challenge reports whether s looks like base64url(SHA-256(...))
// without padding: 43 characters of the base64url alphabet.
func validS256Challenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	for _, c := range []byte(s) {
		if !isBase64URL(c) {
			return false
		}
	}
	return true
}

func isBase64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
