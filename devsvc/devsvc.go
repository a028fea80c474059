// Package devsvc is the demo public service of development mode (SPEC §9):
// a real OpenID Connect client of this instance's provider — go-oidc and
// oauth2, PKCE S256, state, nonce, private_key_jwt — mounted under
// /dev/service, whose page shows, from the verified ID token, the
// person's identity and who acted for them under which mandate.
//
// It talks to the provider over HTTP like any other service would.
package devsvc

import (
	"context"
	"crypto/ecdsa"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"aidants/mandate"
)

// Options configures the demo service.
type Options struct {
	Issuer   string // the instance's public URL
	BaseURL  string // where the demo service is mounted, e.g. Issuer + "/dev/service"
	ClientID string
	Key      *ecdsa.PrivateKey // its private_key_jwt key
	KeyID    string
	Client   *http.Client
}

// Service is the demo public service.
type Service struct {
	opts Options

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
	pending  map[string]pending // by state
}

type pending struct {
	verifier, nonce string
	at              time.Time
}

// New returns the demo service.
func New(opts Options) *Service {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 15 * time.Second}
	}
	return &Service{opts: opts, pending: map[string]pending{}}
}

func (s *Service) ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.provider != nil {
		return nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, s.opts.Client), s.opts.Issuer)
	if err != nil {
		return fmt.Errorf("devsvc: discovery: %w", err)
	}
	s.provider = p
	s.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), s.opts.Client),
		&oidc.Config{ClientID: s.opts.ClientID, SupportedSigningAlgs: []string{oidc.ES256, oidc.RS256}})
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams
	s.oauth = &oauth2.Config{ClientID: s.opts.ClientID, Endpoint: ep, RedirectURL: s.opts.BaseURL + "/retour",
		Scopes: []string{"openid", "given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry", "email"}}
	return nil
}

// assertion is the private_key_jwt client assertion for the token
// endpoint.
func (s *Service) assertion() (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: s.opts.Key, KeyID: s.opts.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	b, _ := json.Marshal(map[string]any{"iss": s.opts.ClientID, "sub": s.opts.ClientID, "aud": s.opts.Issuer + "/oidc/token",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": oauth2.GenerateVerifier()})
	obj, err := signer.Sign(b)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// ServeHTTP serves /dev/service, /dev/service/agir and /dev/service/retour.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/dev/service", "/dev/service/":
		s.render(w, http.StatusOK, page{})
	case "/dev/service/agir":
		s.start(w, r)
	case "/dev/service/retour":
		s.callback(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Service) start(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(r.Context()); err != nil {
		s.render(w, http.StatusServiceUnavailable, page{Error: "Le fournisseur d'identité ne répond pas."})
		return
	}
	state, nonce, verifier := oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	s.mu.Lock()
	for k, p := range s.pending {
		if time.Since(p.at) > 15*time.Minute {
			delete(s.pending, k)
		}
	}
	s.pending[state] = pending{verifier: verifier, nonce: nonce, at: time.Now()}
	s.mu.Unlock()
	// The state also travels in a cookie of this browser: the answer must
	// come back to the browser that asked.
	http.SetCookie(w, &http.Cookie{Name: "devsvc-state", Value: state, Path: "/dev/service", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: 900})
	http.Redirect(w, r, s.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("acr_values", "eidas1")), http.StatusSeeOther)
}

func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		s.render(w, http.StatusOK, page{Error: "Aucune personne n'a été choisie (" + e + ")."})
		return
	}
	state := q.Get("state")
	c, err := r.Cookie("devsvc-state")
	s.mu.Lock()
	p, ok := s.pending[state]
	delete(s.pending, state)
	s.mu.Unlock()
	if !ok || err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 || q.Get("iss") != s.opts.Issuer {
		s.render(w, http.StatusBadRequest, page{Error: "Réponse inattendue du fournisseur d'identité."})
		return
	}
	if err := s.ready(r.Context()); err != nil {
		s.render(w, http.StatusServiceUnavailable, page{Error: "Le fournisseur d'identité ne répond pas."})
		return
	}
	ctx := oidc.ClientContext(r.Context(), s.opts.Client)
	assertion, err := s.assertion()
	if err != nil {
		s.render(w, http.StatusInternalServerError, page{Error: "Signature impossible."})
		return
	}
	tok, err := s.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier),
		oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
		oauth2.SetAuthURLParam("client_assertion", assertion))
	if err != nil {
		s.render(w, http.StatusBadRequest, page{Error: "Le code n'a pas pu être échangé contre les jetons de la personne."})
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := s.verifier.Verify(ctx, raw)
	if err != nil || idt.Nonce != p.nonce {
		s.render(w, http.StatusBadRequest, page{Error: "Le jeton d'identité n'a pas pu être vérifié."})
		return
	}
	var claims Claims
	if err := idt.Claims(&claims); err != nil {
		s.render(w, http.StatusBadRequest, page{Error: "Jeton illisible."})
		return
	}
	ui, err := s.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || ui.Subject != idt.Subject {
		s.render(w, http.StatusBadRequest, page{Error: "Les informations de la personne n'ont pas pu être lues."})
		return
	}
	s.render(w, http.StatusOK, page{Claims: &claims, Logout: s.opts.Issuer + "/oidc/logout?" + url.Values{"client_id": {s.opts.ClientID}}.Encode()})
}

// Claims is what the demo service reads in the ID token.
type Claims struct {
	Subject      string   `json:"sub"`
	GivenName    string   `json:"given_name"`
	FamilyName   string   `json:"family_name"`
	Birthdate    string   `json:"birthdate"`
	Birthplace   string   `json:"birthplace"`
	Birthcountry string   `json:"birthcountry"`
	Gender       string   `json:"gender"`
	ACR          string   `json:"acr"`
	RepScope     []string `json:"rep_scope"`
	Act          struct {
		Subject      string `json:"sub"`
		GivenName    string `json:"given_name"`
		FamilyName   string `json:"family_name"`
		Organisation struct {
			SIRET string `json:"siret"`
			Name  string `json:"name"`
		} `json:"organisation"`
	} `json:"act"`
	AuthorizationDetails []struct {
		Type       string   `json:"type"`
		Identifier string   `json:"identifier"`
		Actions    []string `json:"actions"`
		ExpiresAt  string   `json:"expires_at"`
	} `json:"authorization_details"`
}

type page struct {
	Error  string
	Claims *Claims
	Logout string // the provider's end-session URL for this service
}

func (s *Service) render(w http.ResponseWriter, status int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	pageTemplate.Execute(w, p)
}

// frenchDay writes "2026-03-12" (or an RFC 3339 instant) as "12 mars 2026".
func frenchDay(s string) string {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339, s); err != nil {
			return s
		}
		t = t.In(mandate.Paris)
	}
	return mandate.FrenchDay(t)
}

var pageFuncs = template.FuncMap{
	"day": frenchDay,
	"born": func(gender string) string {
		return map[string]string{"female": "née le", "male": "né le"}[gender]
	},
	"level": func(acr string) string {
		if l, ok := map[string]string{"eidas1": "faible", "eidas2": "substantiel", "eidas3": "élevé"}[acr]; ok {
			return l
		}
		return "non précisé"
	},
	"demarche": mandate.Label,
	"ref":      mandate.Ref,
}

var pageTemplate = template.Must(template.New("page").Funcs(pageFuncs).Parse(`<!doctype html>
<html lang="fr">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Service démo — Aidants (développement)</title>
<link rel="stylesheet" href="/static/aidants.css"></head>
<body>
<a class="skip" href="#contenu">Aller au contenu</a>
<header class="site"><div class="dev-banner" role="note"><strong>Service public de démonstration</strong> — un service en ligne qui utilise Aidants, en mode développement.</div></header>
<main id="contenu" class="wrap" tabindex="-1">
<h1>Service démo des impôts et des aides</h1>
{{with .Error}}<div class="alert" role="alert"><p>{{.}}</p></div>{{end}}
{{with .Claims}}
<section class="card" aria-labelledby="personne">
  <h2 id="personne">La personne</h2>
  <p><strong>{{.GivenName}} {{.FamilyName}}</strong>, {{with born .Gender}}{{.}}{{else}}date de naissance :{{end}} {{day .Birthdate}}</p>
  <p>Garantie de son identité : niveau {{level .ACR}}.</p>
</section>
<section class="card" aria-labelledby="qui">
  <h2 id="qui">Qui agit</h2>
  {{$c := .}}{{range .AuthorizationDetails}}
  <p id="agit">Démarche faite par {{$c.Act.GivenName}} {{$c.Act.FamilyName}} ({{$c.Act.Organisation.Name}}, SIRET {{$c.Act.Organisation.SIRET}}), au titre du mandat n° {{ref .Identifier}}.</p>
  <p>Démarche autorisée : {{range $i, $a := .Actions}}{{if $i}}, {{end}}{{demarche $a}}{{end}}. Mandat valable jusqu'au {{day .ExpiresAt}}.</p>
  {{end}}
</section>
<details class="ids"><summary>Ce que le service a reçu, tel quel</summary>
  <dl>
    <dt>Identifiant de la personne pour ce service</dt><dd><code>{{.Subject}}</code></dd>
    <dt>Niveau d'identité (acr)</dt><dd><code>{{.ACR}}</code></dd>
    {{with .Birthplace}}<dt>Commune de naissance (code officiel)</dt><dd><code>{{.}}</code></dd>{{end}}
    <dt>Identifiant de l'aidant pour ce service</dt><dd><code>{{.Act.Subject}}</code></dd>
    {{range .AuthorizationDetails}}<dt>Mandat</dt><dd><code>{{.Identifier}}</code>, démarches <code>{{range .Actions}}{{.}} {{end}}</code>, jusqu'au <code>{{.ExpiresAt}}</code></dd>{{end}}
    {{with .RepScope}}<dt>Périmètre FranceConnect (rep_scope)</dt><dd><code>{{range .}}{{.}} {{end}}</code></dd>{{end}}
  </dl>
</details>
<p><a class="button secondary" href="{{$.Logout}}">Terminer la démarche et revenir à Aidants</a></p>
{{else}}
<p class="lead">Ce service reçoit l'identité de la personne <em>et</em> sait qui agit pour elle, au titre de quel mandat.</p>
<p><a class="button" href="/dev/service/agir">Agir pour une personne</a></p>
{{end}}
</main>
</body>
</html>`))
