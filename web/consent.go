package web

import (
	"errors"
	"net/http"
	"time"

	"aidants/auth"
	"aidants/mandate"
)

// franceConnectCallback is FranceConnect's own redirect URI; it serves
// every purpose of a FranceConnect sign-in.
func (s *Server) franceConnectCallback(w http.ResponseWriter, r *http.Request) error {
	a, err := s.auth.Complete(w, r, auth.FranceConnect)
	if err != nil {
		return s.fcRefusal(w, r, err, "/")
	}
	switch a.Purpose {
	case auth.PurposeMandateConsent:
		p := auth.PrincipalFrom(r.Context())
		if p == nil {
			return auth.ErrNoSession
		}
		if _, err := s.mandates.Draft(r.Context(), actor(p), a.Data); err != nil {
			return s.mandateError(r, "draft", a.Data, err)
		}
		ev, err := s.evidence(r, a)
		if err != nil {
			return err
		}
		if _, err := s.mandates.Identify(r.Context(), a.Data, "", ev); err != nil {
			return s.mandateError(r, "draft", a.Data, err)
		}
		http.Redirect(w, r, "/brouillons/"+a.Data, http.StatusSeeOther)
		return nil
	case auth.PurposeRemoteConsent:
		c := s.auth.Consent(r)
		ev, err := s.evidence(r, a)
		if err != nil {
			return err
		}
		usager, err := s.mandates.Identify(r.Context(), a.Data, c.Link, ev)
		if err != nil {
			return s.consentError(w, r, err)
		}
		if err := s.auth.SetConsent(w, r, auth.Consent{Link: c.Link, UsagerID: usager}); err != nil {
			return err
		}
		http.Redirect(w, r, "/consentement/recapitulatif", http.StatusSeeOther)
		return nil
	case auth.PurposeUsagerLogin:
		return s.usagerCallback(w, r, a)
	}
	return badRequest("Cette connexion FranceConnect ne correspond à aucune démarche en cours.")
}

// evidence turns a verified FranceConnect answer into consent evidence,
// with the provider key that verified the ID token.
func (s *Server) evidence(r *http.Request, a *auth.Answer) (mandate.Evidence, error) {
	jwk, err := s.auth.EvidenceKey(r.Context(), a)
	if err != nil {
		return mandate.Evidence{}, err
	}
	return mandate.Evidence{Issuer: a.Issuer, Subject: a.Subject, Nonce: a.IDToken.Nonce, Claims: a.Claims,
		RawIDToken: a.RawIDToken, JWK: jwk}, nil
}

// fcRefusal explains a FranceConnect answer that could not be used.
func (s *Server) fcRefusal(w http.ResponseWriter, r *http.Request, err error, retry string) error {
	p := &refusalPage{Page: s.base(r), Retry: retry, RetryLabel: "Recommencer"}
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, auth.ErrCancelled):
		status = http.StatusOK
		p.Heading, p.Message = "Connexion annulée", "La connexion avec FranceConnect a été annulée. Rien n'a été enregistré."
	case errors.Is(err, auth.ErrBadCallback):
		p.Heading = "Cette connexion n'est plus valable"
		p.Message = "Le retour de FranceConnect a déjà servi, a expiré, ou a été ouvert dans un autre navigateur. Rien n'a été enregistré."
	case errors.Is(err, auth.ErrBadToken):
		p.Heading = "La connexion n'a pas pu être vérifiée"
		p.Message = "La réponse de FranceConnect n'a pas pu être vérifiée. Par sécurité, rien n'a été enregistré."
	default:
		return err
	}
	s.logger.Info("franceconnect answer refused", "request_id", requestID(r.Context()), "err", err.Error())
	s.metrics.signInRefused(auth.FranceConnect, err)
	s.render(w, r, status, "refus", p)
	return nil
}

type consentPage struct {
	Page
	Draft      *mandate.Draft
	State      string
	OrgName    string
	AidantName string
	Labels     []string
	Duration   string
	Until      time.Time
	Usager     *mandate.Usager
	Link       string
	Done       string // accepted | refused
	MandateID  string
}

// consentDraft loads the draft of the person's link, refusing a used or
// expired one.
func (s *Server) consentDraft(r *http.Request, link string) (*consentPage, error) {
	if link == "" {
		return nil, mandate.ErrLinkUsed
	}
	d, err := s.mandates.DraftByLink(r.Context(), link)
	if errors.Is(err, mandate.ErrNotFound) {
		return nil, mandate.ErrLinkUsed
	}
	if err != nil {
		return nil, err
	}
	st := d.State(s.now())
	switch st {
	case mandate.DraftExpired:
		return nil, mandate.ErrDraftExpired
	case mandate.DraftPending, mandate.DraftIdentified:
	default:
		return nil, mandate.ErrLinkUsed
	}
	o, err := s.dir.Organisation(r.Context(), d.OrganisationID)
	if err != nil {
		return nil, err
	}
	a, err := s.dir.Aidant(r.Context(), d.CreatedBy)
	if err != nil {
		return nil, err
	}
	page := &consentPage{Page: s.base(r), Draft: d, State: st, OrgName: o.Name, AidantName: a.GivenName + " " + a.FamilyName, Link: link,
		Duration: d.DurationSpan().Label, Until: d.DurationSpan().Until(s.now())}
	for _, c := range d.Demarches {
		page.Labels = append(page.Labels, mandate.Label(c))
	}
	return page, nil
}

// consentError shows the person a clear page for a link that cannot be used.
func (s *Server) consentError(w http.ResponseWriter, r *http.Request, err error) error {
	var text string
	var ok bool
	for target, t := range mandateMessages {
		if errors.Is(err, target) {
			text, ok = t, true
		}
	}
	if !ok {
		return err
	}
	s.logger.Info("consent refused", "request_id", requestID(r.Context()), "err", err.Error())
	s.render(w, r, http.StatusBadRequest, "refus", &refusalPage{Page: s.base(r), Heading: "Ce lien ne peut pas être utilisé",
		Message: text, Retry: "/", RetryLabel: "Retour à l'accueil"})
	return nil
}

// consentStart is the page a consent link opens, on the person's device.
func (s *Server) consentStart(w http.ResponseWriter, r *http.Request) error {
	page, err := s.consentDraft(r, r.URL.Query().Get("jeton"))
	if err != nil {
		return s.consentError(w, r, err)
	}
	s.render(w, r, http.StatusOK, "consentement", page)
	return nil
}

// consentFranceConnect sends the person to FranceConnect, the nonce bound
// to the draft, remembering the link in their browser.
func (s *Server) consentFranceConnect(w http.ResponseWriter, r *http.Request) error {
	link := r.PostFormValue("jeton")
	page, err := s.consentDraft(r, link)
	if err != nil {
		return s.consentError(w, r, err)
	}
	if err := s.auth.SetConsent(w, r, auth.Consent{Link: link}); err != nil {
		return err
	}
	target, err := s.auth.BeginFranceConnect(w, r, auth.PurposeRemoteConsent, "/consentement/recapitulatif", page.Draft.ID, page.Draft.Nonce())
	if err != nil {
		return err
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

// consentRecap shows the identified person what they are asked to accept.
func (s *Server) consentRecap(w http.ResponseWriter, r *http.Request) error {
	c := s.auth.Consent(r)
	page, err := s.consentDraft(r, c.Link)
	if err != nil {
		return s.consentError(w, r, err)
	}
	if c.UsagerID == "" || page.Draft.UsagerID != c.UsagerID {
		http.Redirect(w, r, "/consentement?jeton="+c.Link, http.StatusSeeOther)
		return nil
	}
	if page.Usager, err = s.mandates.Usager(r.Context(), c.UsagerID); err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "consentement-recap", page)
	return nil
}

// consentDecide records the person's acceptance or refusal.
func (s *Server) consentDecide(accept bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		c := s.auth.Consent(r)
		link := c.Link
		if link == "" {
			link = r.PostFormValue("jeton") // a refusal before identifying
		}
		page, err := s.consentDraft(r, link)
		if err != nil {
			return s.consentError(w, r, err)
		}
		if accept {
			m, err := s.mandates.AcceptRemote(r.Context(), link, c.UsagerID)
			if err != nil {
				return s.consentError(w, r, err)
			}
			page.Done, page.MandateID = "accepted", m.ID
		} else {
			if err := s.mandates.RefuseRemote(r.Context(), link, c.UsagerID); err != nil {
				return s.consentError(w, r, err)
			}
			page.Done = "refused"
		}
		s.auth.ClearConsent(w)
		s.render(w, r, http.StatusOK, "consentement-fin", page)
		return nil
	}
}
