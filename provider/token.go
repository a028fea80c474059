package provider

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/internal/jwtverify"
	"aidants/keys"
	"aidants/mandate"
	"aidants/store"
)

// grant is what a code, once redeemed, lets the service know.
type grant struct {
	Code       string
	Service    *Service
	Scope      string
	Claims     Requested
	Nonce      string
	AuthTime   time.Time
	ACR        string
	Demarche   string
	MandateID  string
	MandateEnd time.Time
	JTI        string
	Usager     mandate.Usager
	Aidant     struct {
		ID, GivenName, FamilyName string
	}
	Org struct {
		ID, SIRET, Name string
	}
}

type codeRow struct {
	ServiceID     string     `db:"service_id"`
	RedirectURI   string     `db:"redirect_uri"`
	CodeChallenge string     `db:"code_challenge"`
	Nonce         string     `db:"nonce"`
	Scope         string     `db:"scope"`
	Claims        Requested  `db:"claims"`
	AidantID      string     `db:"aidant_id"`
	OrgID         string     `db:"organisation_id"`
	UsagerID      string     `db:"usager_id"`
	MandateID     string     `db:"mandate_id"`
	Demarche      string     `db:"demarche"`
	AuthTime      store.Time `db:"auth_time"`
	ACR           string     `db:"acr"`
	ExpiresAt     store.Time `db:"expires_at"`
	UsedAt        store.Time `db:"used_at"`
}

// redeem exchanges a code, every check in one transaction, which also
// spends the client's assertion: the code must exist, be unused (a second
// use revokes what the first issued), younger than 60 s, the client's,
// for the same redirect URI, with the PKCE verifier of its challenge, and
// its mandate still active for its démarche (token.issued).
func (p *Provider) redeem(ctx context.Context, svc *Service, use *assertionUse, code, redirectURI, verifier string) (*grant, error) {
	g := &grant{Code: store.Hash(code), Service: svc, JTI: store.NewID("at")}
	var reuse bool
	var refused error // a refusal that still spends the assertion
	err := p.log.Write(ctx, func(tx *audit.Tx) error {
		if err := p.spend(tx, use); err != nil {
			return err
		}
		refused = p.exchange(tx, g, &reuse, redirectURI, verifier, code)
		var e *Error
		if errors.As(refused, &e) {
			return nil // every refusal comes before any change: only the jti is kept
		}
		return refused
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, err
	}
	if reuse {
		return nil, errInvalidGrant("the code was already used; the tokens it gave are revoked")
	}
	return g, nil
}

// exchange runs the checks and changes of a code exchange in tx. The
// refusals (*Error) all come before the first change.
func (p *Provider) exchange(tx *audit.Tx, g *grant, reuse *bool, redirectURI, verifier, code string) error {
	svc := g.Service
	if code == "" || redirectURI == "" {
		return errInvalidRequest("code and redirect_uri are required")
	}
	if len(verifier) < 43 || len(verifier) > 128 {
		return errInvalidGrant("a PKCE code_verifier of 43 to 128 characters is required")
	}
	var c codeRow
	if err := tx.Get(&c, `SELECT service_id, redirect_uri, code_challenge, nonce, scope, claims, aidant_id, organisation_id, usager_id,
		mandate_id, demarche, auth_time, acr, expires_at, used_at FROM oidc_codes WHERE hash = ?`, g.Code); errors.Is(err, sql.ErrNoRows) {
		return errInvalidGrant("unknown code")
	} else if err != nil {
		return err
	}
	now := tx.Now()
	if !c.UsedAt.IsZero() {
		// A replayed code: whatever the first use got stops working.
		if _, err := tx.Exec(`UPDATE oidc_tokens SET revoked_at = ? WHERE code_hash = ? AND revoked_at IS NULL`, store.T(now), g.Code); err != nil {
			return err
		}
		*reuse = true
		return nil
	}
	switch {
	case !now.Before(c.ExpiresAt.Time):
		return errInvalidGrant("the code has expired")
	case c.ServiceID != svc.ID:
		return errInvalidGrant("the code was issued to another client")
	case c.RedirectURI != redirectURI:
		return errInvalidGrant("redirect_uri differs from the authorization request's")
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.CodeChallenge)) != 1 {
		return errInvalidGrant("the code_verifier does not match the code_challenge")
	}
	m, err := mandate.ActiveFor(tx, c.MandateID, c.Demarche)
	if errors.Is(err, mandate.ErrRevoked) || errors.Is(err, mandate.ErrExpired) || errors.Is(err, store.ErrNotFound) {
		return errInvalidGrant("the mandate is no longer active for this démarche")
	} else if err != nil {
		return err
	}
	if _, err := tx.Exec(`UPDATE oidc_codes SET used_at = ? WHERE hash = ?`, store.T(now), g.Code); err != nil {
		return err
	}
	g.Scope, g.Claims, g.Nonce, g.AuthTime, g.ACR = c.Scope, c.Claims, c.Nonce, c.AuthTime.Time, c.ACR
	g.Demarche, g.MandateID, g.MandateEnd = c.Demarche, m.ID, m.ExpiresAt.Time
	if err := tx.Get(&g.Usager, `SELECT id, issuer, subject, given_name, family_name, birthdate, gender, birthplace, birthcountry,
		COALESCE(email, '') AS email, created_at, updated_at FROM usagers WHERE id = ?`, c.UsagerID); err != nil {
		return err
	}
	var names struct {
		Given  string `db:"given_name"`
		Family string `db:"family_name"`
		SIRET  string `db:"siret"`
		Org    string `db:"name"`
	}
	if err := tx.Get(&names, `SELECT a.given_name, a.family_name, o.siret, o.name FROM aidants a, organisations o
		WHERE a.id = ? AND o.id = ?`, c.AidantID, c.OrgID); err != nil {
		return err
	}
	g.Aidant.ID, g.Aidant.GivenName, g.Aidant.FamilyName = c.AidantID, names.Given, names.Family
	g.Org.ID, g.Org.SIRET, g.Org.Name = c.OrgID, names.SIRET, names.Org
	// Userinfo answers these claims for as long as the token lives: the
	// ID token's, with the identity claims asked for userinfo in place of
	// those asked for the ID token.
	claims, err := json.Marshal(p.claims(g, g.Claims.UserInfo))
	if err != nil {
		return err
	}
	if _, err := tx.Exec(`INSERT INTO oidc_tokens (jti, code_hash, service_id, mandate_id, demarche, expires_at, claims) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		g.JTI, g.Code, svc.ID, m.ID, c.Demarche, store.T(now.Add(p.cfg.AccessTokenTTL)), string(claims)); err != nil {
		return err
	}
	_, err = tx.Append(audit.Event{Type: audit.TokenIssued, Actor: audit.Actor{Kind: audit.ActorService, ID: svc.ID},
		Aidant: c.AidantID, Organisation: c.OrgID, Usager: c.UsagerID, Mandate: m.ID, Service: svc.ID, Demarches: []string{c.Demarche}})
	return err
}

// claims returns what the service learns of the person (the pivot claims
// its scopes allow, and those of asked, from the claims parameter) and of
// who acts for them.
func (p *Provider) claims(g *grant, asked []string) map[string]any {
	c := map[string]any{
		"sub": p.pairwise("usager", g.Usager.ID, g.Service.ID),
		"act": map[string]any{
			"sub":          p.pairwise("aidant", g.Aidant.ID, g.Service.ID),
			"given_name":   g.Aidant.GivenName,
			"family_name":  g.Aidant.FamilyName,
			"organisation": map[string]any{"siret": g.Org.SIRET, "name": g.Org.Name},
		},
		"authorization_details": []map[string]any{{
			"type": "mandate", "identifier": g.MandateID, "actions": []string{g.Demarche},
			"expires_at": g.MandateEnd.UTC().Format(time.RFC3339),
		}},
	}
	if d, ok := mandate.LookupDemarche(g.Demarche); ok {
		c["rep_scope"] = []string{d.RepScope}
	}
	pivot := map[string]string{
		"given_name": g.Usager.GivenName, "family_name": g.Usager.FamilyName, "birthdate": g.Usager.Birthdate,
		"gender": g.Usager.Gender, "birthplace": g.Usager.Birthplace, "birthcountry": g.Usager.Birthcountry, "email": g.Usager.Email,
	}
	scopes := strings.Fields(g.Scope)
	for _, name := range PivotClaims {
		if (releases(scopes, name) || slices.Contains(asked, name)) && (pivot[name] != "" || name == "birthplace") {
			c[name] = pivot[name]
		}
	}
	return c
}

// signers are the keys a token response is signed with, taken before the
// code is redeemed: reading or making keys may touch the database, and a
// failure there must come before the exchange, which spends the code and
// journals token.issued. After it, signing is computation only.
type signers struct{ id, access jose.Signer }

func (p *Provider) signers(ctx context.Context, svc *Service) (*signers, error) {
	id, err := p.keys.Signer(ctx, keys.UseToken, jose.SignatureAlgorithm(svc.IDTokenAlg), "JWT")
	if err != nil {
		return nil, fmt.Errorf("provider: ID token key: %w", err)
	}
	access, err := p.keys.Signer(ctx, keys.UseToken, jose.ES256, "at+jwt")
	if err != nil {
		return nil, fmt.Errorf("provider: access token key: %w", err)
	}
	return &signers{id: id, access: access}, nil
}

// sign makes a compact JWS of claims.
func sign(signer jose.Signer, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// tokens signs the ID token and the access token (RFC 9068) of a grant.
func (p *Provider) tokens(g *grant, ks *signers) (map[string]any, error) {
	now := p.now()
	id := p.claims(g, g.Claims.IDToken)
	id["iss"], id["aud"], id["iat"], id["exp"] = p.issuer, g.Service.ID, now.Unix(), now.Add(p.cfg.IDTokenTTL).Unix()
	id["auth_time"], id["nonce"], id["acr"] = g.AuthTime.Unix(), g.Nonce, g.ACR
	idToken, err := sign(ks.id, id)
	if err != nil {
		return nil, fmt.Errorf("provider: sign ID token: %w", err)
	}
	at := p.claims(g, nil)
	for _, name := range PivotClaims {
		delete(at, name)
	}
	at["iss"], at["aud"], at["client_id"], at["iat"], at["exp"] = p.issuer, p.issuer+"/oidc/userinfo", g.Service.ID, now.Unix(), now.Add(p.cfg.AccessTokenTTL).Unix()
	at["jti"], at["scope"], at["auth_time"] = g.JTI, g.Scope, g.AuthTime.Unix()
	access, err := sign(ks.access, at)
	if err != nil {
		return nil, fmt.Errorf("provider: sign access token: %w", err)
	}
	return map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": int(p.cfg.AccessTokenTTL.Seconds()),
		"id_token": idToken, "scope": g.Scope}, nil
}

// Token serves the token endpoint: client authentication as registered,
// then the authorization code grant (or the client credentials grant of
// an auditor, when ClientCredentials is set).
func (p *Provider) Token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		p.writeError(w, errInvalidRequest("a form POST is expected"))
		return
	}
	if len(r.URL.Query()) > 0 {
		p.writeError(w, errInvalidRequest("parameters go in the body, not the URL"))
		return
	}
	form := r.PostForm
	user, pass, hasBasic, err := basicCredentials(r)
	if err != nil {
		p.writeError(w, err)
		return
	}
	if form.Get("grant_type") == "client_credentials" && p.ClientCredentials != nil {
		p.ClientCredentials(w, r, form, hasBasic)
		return
	}
	svc, use, err := p.authenticate(r.Context(), form, user, pass, hasBasic)
	if err != nil {
		p.writeError(w, err)
		return
	}
	if gt := form.Get("grant_type"); gt != "authorization_code" {
		if use != nil { // the assertion is spent all the same
			if err := p.log.Write(r.Context(), func(tx *audit.Tx) error { return p.spend(tx, use) }); err != nil {
				p.writeError(w, err)
				return
			}
		}
		p.writeError(w, &Error{http.StatusBadRequest, "unsupported_grant_type", "authorization_code only"})
		return
	}
	ks, err := p.signers(r.Context(), svc)
	if err != nil {
		p.writeError(w, err)
		return
	}
	g, err := p.redeem(r.Context(), svc, use, form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier"))
	if err != nil {
		p.writeError(w, err)
		return
	}
	resp, err := p.tokens(g, ks)
	if err != nil {
		p.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// basicCredentials reads HTTP Basic client authentication. RFC 6749
// §2.3.1: the client id and secret are form-encoded before they go in the
// header — openid-client sends svc_… as svc%5F…, x/oauth2 escapes them
// too —, so they are decoded here. Sent as they are, they decode to
// themselves: client ids and secrets here never hold "%" or "+". An
// Authorization header of another scheme is none.
func basicCredentials(r *http.Request) (id, secret string, ok bool, err error) {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false, nil
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", "", false, errInvalidClient("unreadable Basic credentials")
	}
	if id, err = url.QueryUnescape(user); err == nil {
		secret, err = url.QueryUnescape(pass)
	}
	if err != nil {
		return "", "", false, errInvalidClient("the Basic credentials are not form-encoded (RFC 6749 §2.3.1)")
	}
	return id, secret, true, nil
}

// ErrBadToken is an access token userinfo refuses.
var ErrBadToken = errors.New("provider: invalid access token")

// UserInfo serves the userinfo endpoint: a Bearer access token in the
// Authorization header only (never in the URL or the body), signed by this
// provider, unexpired, not revoked, whose mandate is still active for its
// démarche; it answers the ID token's claims with the same sub.
func (p *Provider) UserInfo(w http.ResponseWriter, r *http.Request) {
	bad := func(d string) { p.writeError(w, &Error{http.StatusUnauthorized, "invalid_token", d}) }
	if r.URL.Query().Has("access_token") {
		bad("the access token goes in the Authorization header, never in the URL")
		return
	}
	if r.Method == http.MethodPost && r.ParseForm() == nil && r.PostForm.Has("access_token") {
		bad("the access token goes in the Authorization header, never in the body")
		return
	}
	auth := r.Header.Get("Authorization")
	scheme, raw, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || raw == "" { // the scheme is case-insensitive (RFC 7235)
		bad("a Bearer access token is required")
		return
	}
	tok, err := jwtverify.Parse(raw, jose.ES256)
	if err != nil {
		bad("not an access token of this provider")
		return
	}
	if tok.Type != "at+jwt" {
		bad("not an access token (typ)")
		return
	}
	key, ok, err := p.keys.Public(r.Context(), tok.KeyID)
	if err != nil {
		p.writeError(w, err)
		return
	}
	if !ok {
		bad("unknown signing key")
		return
	}
	var at map[string]any
	if _, err := tok.Verify(key, jwtverify.Expect{Type: "at+jwt", Issuer: p.issuer, Audience: []string{p.issuer + "/oidc/userinfo"}, Now: p.now()}, &at); err != nil {
		if errors.Is(err, jwtverify.ErrSignature) {
			bad("the signature does not verify")
		} else {
			bad("expired, or not issued here for userinfo")
		}
		return
	}
	jti, _ := at["jti"].(string)
	var row struct {
		ServiceID string     `db:"service_id"`
		MandateID string     `db:"mandate_id"`
		Demarche  string     `db:"demarche"`
		CodeHash  string     `db:"code_hash"`
		Revoked   store.Time `db:"revoked_at"`
		Claims    string     `db:"claims"`
	}
	// Each check below refuses only what it found: a database that fails
	// is a server error, never an invalid token.
	err = p.db.R.GetContext(r.Context(), &row, p.db.Rebind(`SELECT service_id, mandate_id, demarche, code_hash, revoked_at, claims
		FROM oidc_tokens WHERE jti = ?`), jti)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		bad("revoked or unknown access token")
		return
	case err != nil:
		p.writeError(w, fmt.Errorf("provider: userinfo: token: %w", err))
		return
	case !row.Revoked.IsZero():
		bad("revoked or unknown access token")
		return
	}
	cached, err := p.service(r.Context(), row.ServiceID)
	if errors.Is(err, store.ErrNotFound) {
		bad("the service is no longer registered")
		return
	} else if err != nil {
		p.writeError(w, fmt.Errorf("provider: userinfo: %w", err))
		return
	}
	err = p.mandates.CheckActive(r.Context(), row.MandateID, row.Demarche)
	if errors.Is(err, mandate.ErrRevoked) || errors.Is(err, mandate.ErrExpired) || errors.Is(err, mandate.ErrNotFound) {
		bad("the mandate is no longer active for this démarche")
		return
	} else if err != nil {
		p.writeError(w, fmt.Errorf("provider: userinfo: %w", err))
		return
	}
	if !cached.svc.UserinfoSigned {
		writeJSON(w, http.StatusOK, json.RawMessage(row.Claims))
		return
	}
	signed, err := p.signUserInfo(r.Context(), &cached.svc, row.Claims)
	if err != nil {
		p.writeError(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwt")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, signed)
}

// signUserInfo signs a userinfo answer for a service that registered it
// (Core §5.3.2, as FranceConnect v2 answers): the claims, with iss and
// aud, signed with the service's ID-token algorithm. No exp and no nonce:
// it can never pass for an ID token.
func (p *Provider) signUserInfo(ctx context.Context, svc *Service, raw string) (string, error) {
	var claims map[string]any
	if err := json.Unmarshal([]byte(raw), &claims); err != nil {
		return "", fmt.Errorf("provider: userinfo: stored claims: %w", err)
	}
	signer, err := p.keys.Signer(ctx, keys.UseToken, jose.SignatureAlgorithm(svc.IDTokenAlg), "JWT")
	if err != nil {
		return "", fmt.Errorf("provider: userinfo key: %w", err)
	}
	claims["iss"], claims["aud"], claims["iat"] = p.issuer, svc.ID, p.now().Unix()
	signed, err := sign(signer, claims)
	if err != nil {
		return "", fmt.Errorf("provider: sign userinfo: %w", err)
	}
	return signed, nil
}

// Handler serves the machine endpoints: discovery, token, userinfo.
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		json.NewEncoder(w).Encode(p.Discovery())
	})
	mux.HandleFunc("POST /oidc/token", p.Token)
	mux.HandleFunc("GET /oidc/userinfo", p.UserInfo)
	mux.HandleFunc("POST /oidc/userinfo", p.UserInfo)
	return mux
}
