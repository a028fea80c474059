package web

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"aidants/audit"
	"aidants/auth"
	"aidants/provider"
)

// oidcAuthorize receives a public service's authorization request: a bad
// client or redirect URI gets a page (never a redirect), other mistakes go
// back to the service, and a good request waits for the aidant's choice.
func (s *Server) oidcAuthorize(w http.ResponseWriter, r *http.Request) error {
	req, _, err := s.provider.Authorize(r.Context(), r.URL.Query())
	var pe *provider.PageError
	var re *provider.RedirectError
	switch {
	case errors.As(err, &pe):
		s.logger.Info("authorization request refused", "request_id", requestID(r.Context()), "reason", pe.Reason)
		s.render(w, r, http.StatusBadRequest, "refus", &refusalPage{Page: s.base(r), Heading: "Demande non valable",
			Message: "Le service en ligne qui vous a envoyé ici a fait une demande que nous ne pouvons pas accepter (service inconnu, ou adresse de retour non enregistrée). Par sécurité, le service ne reçoit rien et vous restez ici.",
			Help:    "Si vous cherchiez à faire une démarche pour une personne, repassez par le site du service.", Retry: "/", RetryLabel: "Retour à l'accueil"})
		return nil
	case errors.As(err, &re):
		http.Redirect(w, r, re.URL(s.provider.Issuer()), http.StatusSeeOther)
		return nil
	case err != nil:
		return err
	}
	if req.PromptNone {
		http.Redirect(w, r, s.promptNone(r, req).URL(s.provider.Issuer()), http.StatusSeeOther)
		return nil
	}
	token, err := s.provider.Seal(req, s.auth.Binding(w, r))
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/agir?demande="+url.QueryEscape(token), http.StatusSeeOther)
	return nil
}

// promptNone answers a request that may show the aidant nothing (Core
// §3.1.2.1): login_required when no aidant is signed in or their
// authentication is too old for it, interaction_required otherwise —
// choosing the person to act for always needs the aidant.
func (s *Server) promptNone(r *http.Request, req *provider.AuthRequest) *provider.RedirectError {
	p := auth.PrincipalFrom(r.Context())
	switch {
	case p == nil:
		return req.Refusal("login_required", "no aidant is signed in")
	case !p.FreshFor(s.auth.StepUpMaxAge(), s.now()) || req.Reauthenticate(p.AuthTime):
		return req.Refusal("login_required", "the aidant must authenticate again")
	}
	return req.Refusal("interaction_required", "an aidant must choose the person to act for")
}

type actPage struct {
	Page
	Token   string
	Service string
	Search  string
	Choices []provider.Choice
	Asked   []string // the démarches the service asked for, if it did
}

// act shows the aidant the persons they may act for at the service, once
// their authentication is recent enough for this service (max_age,
// prompt=login) as for any act on behalf (step-up).
func (s *Server) act(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	token := r.URL.Query().Get("demande")
	if !s.fresh(w, r, actPath(token)) {
		return nil
	}
	req, svc, err := s.provider.Request(r.Context(), token, s.auth.BrowserBinding(r))
	if errors.Is(err, provider.ErrRequestGone) {
		return s.requestGone(w, r)
	}
	if err != nil {
		return err
	}
	if req.Reauthenticate(p.AuthTime) {
		return s.reauthenticate(w, r, token)
	}
	if _, ok := req.ACR(p.MFA); !ok {
		return s.unmetACR(w, r, token)
	}
	// The chooser's forms end in a redirect to the service: a browser
	// enforces form-action on it, so the service's origin is allowed on
	// this page (only its registered redirect URI's).
	if u, err := url.Parse(req.RedirectURI); err == nil && u.Host != "" {
		w.Header().Set("Content-Security-Policy", s.csp+" "+u.Scheme+"://"+u.Host)
	}
	page := &actPage{Page: s.base(r), Token: token, Service: svc.Name, Search: r.URL.Query().Get("q"), Asked: req.RepScope}
	if p.IsAidant {
		if page.Choices, err = s.provider.Eligible(r.Context(), p.OrganisationID, req, svc, page.Search); err != nil {
			return err
		}
	}
	s.render(w, r, http.StatusOK, "agir", page)
	return nil
}

func actPath(token string) string { return "/agir?demande=" + url.QueryEscape(token) }

// authenticatedFor tells the provider that an aidant's authentication was
// made for the request whose chooser it returns to, if any, and returns
// where to go: that chooser, with the request as it now reads.
func (s *Server) authenticatedFor(r *http.Request, returnTo string, authTime time.Time) (string, error) {
	u, err := url.Parse(returnTo)
	if err != nil || u.Path != "/agir" || u.Query().Get("demande") == "" || s.provider == nil {
		return returnTo, nil
	}
	q := u.Query()
	token, err := s.provider.Authenticated(q.Get("demande"), s.auth.BrowserBinding(r), authTime)
	if err != nil {
		return "", err
	}
	q.Set("demande", token)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// reauthenticate sends the aidant to authenticate again at the aidants'
// provider, then back to the chooser. A provider that answers the step-up
// without authenticating anew (an old auth_time) would send the browser
// round for ever: the second time, the aidant gets a page instead.
func (s *Server) reauthenticate(w http.ResponseWriter, r *http.Request, token string) error {
	if r.URL.Query().Get("reauthentifie") == "1" {
		s.render(w, r, http.StatusForbidden, "refus", &refusalPage{Page: s.base(r), Heading: "Nouvelle authentification nécessaire",
			Message: "Le service en ligne demande que vous vous authentifiiez à nouveau avant de choisir la personne, et votre fournisseur d'identité ne l'a pas fait.",
			Help:    "Recommencez ; si cela se reproduit, prévenez l'équipe qui gère le service.", Retry: actPath(token), RetryLabel: "Recommencer"})
		return nil
	}
	http.Redirect(w, r, "/connexion/aidant/reauthentification?retour="+url.QueryEscape(actPath(token)+"&reauthentifie=1"), http.StatusSeeOther)
	return nil
}

// unmetACR answers the service that the aidant's authentication cannot
// reach the level it asked as essential.
func (s *Server) unmetACR(w http.ResponseWriter, r *http.Request, token string) error {
	target, err := s.provider.Refuse(r.Context(), token, s.auth.BrowserBinding(r), "unmet_authentication_requirements",
		"the aidant's authentication does not reach the essential acr asked")
	if errors.Is(err, provider.ErrRequestGone) {
		return s.requestGone(w, r)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

func (s *Server) requestGone(w http.ResponseWriter, r *http.Request) error {
	s.render(w, r, http.StatusBadRequest, "refus", &refusalPage{Page: s.base(r), Heading: "Cette demande n'est plus valable",
		Message: "La demande du service en ligne a expiré ou a déjà reçu une réponse.",
		Help:    "Retournez sur le site du service et recommencez.", Retry: "/tableau-de-bord", RetryLabel: "Tableau de bord"})
	return nil
}

// actChoose answers the service with a code for the chosen person. A
// choice the aidant was not offered is refused and journaled
// (access.denied); any other failure is the server's, answered as such
// and journaled as nothing.
func (s *Server) actChoose(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	if err := r.ParseForm(); err != nil {
		return badRequest("Le formulaire est illisible.")
	}
	token := r.PostFormValue("demande")
	if !s.fresh(w, r, actPath(token)) {
		return nil
	}
	err := provider.ErrNotEligible // a référent without the aidant role acts for no one
	var target string
	if p.IsAidant {
		target, err = s.provider.IssueCode(r.Context(), provider.Acting{AidantID: p.AidantID, OrganisationID: p.OrganisationID,
			AuthTime: p.AuthTime, MFA: p.MFA}, token, s.auth.BrowserBinding(r), r.PostFormValue("mandat"), r.PostFormValue("demarche"))
	}
	switch {
	case errors.Is(err, provider.ErrRequestGone):
		return s.requestGone(w, r)
	case errors.Is(err, provider.ErrReauthenticate):
		return s.reauthenticate(w, r, token)
	case errors.Is(err, provider.ErrUnmetACR):
		return s.unmetACR(w, r, token)
	case errors.Is(err, provider.ErrNotEligible):
		ev := audit.Event{Type: audit.AccessDenied, Actor: p.Actor(), Aidant: p.AidantID, Organisation: p.OrganisationID,
			Detail: map[string]any{"object": "mandate", "id": r.PostFormValue("mandat"), "demarche": r.PostFormValue("demarche"), "path": r.Pattern}}
		if werr := s.log.Write(r.Context(), func(tx *audit.Tx) error { _, err := tx.Append(ev); return err }); werr != nil {
			return werr
		}
		return &Error{Status: http.StatusForbidden, Msg: message{"Choix impossible",
			"Cette personne ne peut pas être choisie pour ce service (pas de mandat actif de votre structure pour cette démarche). Rien n'a été transmis au service."},
			Err: err}
	case err != nil:
		return err
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

// actCancel tells the service the aidant chose nobody.
func (s *Server) actCancel(w http.ResponseWriter, r *http.Request) error {
	target, err := s.provider.Cancel(r.Context(), r.PostFormValue("demande"), s.auth.BrowserBinding(r))
	if errors.Is(err, provider.ErrRequestGone) {
		return s.requestGone(w, r)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

type leftServicePage struct {
	Page
	Service string
}

// oidcLogout is RP-initiated logout: back to the service only at a
// registered address.
func (s *Server) oidcLogout(w http.ResponseWriter, r *http.Request) error {
	target, name, err := s.provider.Logout(r.Context(), r.URL.Query())
	if err != nil {
		return err
	}
	if target != "" {
		http.Redirect(w, r, target, http.StatusSeeOther)
		return nil
	}
	s.render(w, r, http.StatusOK, "service-quitte", &leftServicePage{Page: s.base(r), Service: name})
	return nil
}
