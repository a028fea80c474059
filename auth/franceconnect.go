package auth

import (
	"context"
	"fmt"
	"net/http"
)

// Purposes of FranceConnect sign-ins.
const (
	PurposeMandateConsent = "mandate_consent" // on the aidant's screen
	PurposeRemoteConsent  = "remote_consent"  // on the person's own device
	PurposeUsagerLogin    = "usager_login"    // the person's space
)

// BeginFranceConnect sends the person to FranceConnect. For a mandate,
// nonce binds their authentication to the draft and data names it.
func (s *Service) BeginFranceConnect(w http.ResponseWriter, r *http.Request, purpose, returnTo, data, nonce string) (string, error) {
	return s.Begin(w, r, Request{Provider: FranceConnect, Purpose: purpose, ReturnTo: returnTo, Data: data, Nonce: nonce})
}

// EvidenceKey returns, as JWK JSON, the FranceConnect key that verifies the
// answer's ID token.
func (s *Service) EvidenceKey(ctx context.Context, a *Answer) (string, error) {
	if a.Provider != FranceConnect {
		return "", fmt.Errorf("auth: evidence from %s", a.Provider)
	}
	return s.rps[FranceConnect].verifyingKey(ctx, a.RawIDToken)
}

// Consent is the state of a remote consent in the person's browser: the
// link they came with and, once identified, who they are.
type Consent struct {
	Link     string
	UsagerID string
}

const consentCookie = "aidants-consentement"

// SetConsent keeps the remote consent's state in an encrypted cookie of the
// person's browser, for an hour at most.
func (s *Service) SetConsent(w http.ResponseWriter, r *http.Request, c Consent) error {
	sess, err := s.cookies.New(r, s.cookieName(consentCookie))
	if sess == nil {
		return fmt.Errorf("auth: consent cookie: %w", err)
	}
	sess.Options.MaxAge = 3600
	sess.Values = map[any]any{"link": c.Link, "usager": c.UsagerID}
	return sess.Save(r, w)
}

// Consent reads the remote consent's state; the zero Consent when none.
func (s *Service) Consent(r *http.Request) Consent {
	sess, err := s.cookies.Get(r, s.cookieName(consentCookie))
	if err != nil || sess.IsNew {
		return Consent{}
	}
	link, _ := sess.Values["link"].(string)
	usager, _ := sess.Values["usager"].(string)
	return Consent{Link: link, UsagerID: usager}
}

// ClearConsent forgets the remote consent in this browser.
func (s *Service) ClearConsent(w http.ResponseWriter) { s.clearCookie(w, consentCookie) }
