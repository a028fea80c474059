package web

import (
	"errors"
	"net/http"
	"time"

	"aidants/auth"
	"aidants/mandate"
)

type homePage struct{ Page }

func (s *Server) home(w http.ResponseWriter, r *http.Request) error {
	s.render(w, r, http.StatusOK, "home", &homePage{Page: s.base(r)})
	return nil
}

type connexionPage struct {
	Page
	ReturnTo string
	Notice   string
}

func (s *Server) connexion(w http.ResponseWriter, r *http.Request) error {
	p := &connexionPage{Page: s.base(r)}
	if rt := r.URL.Query().Get("retour"); auth.LocalPath(rt) {
		p.ReturnTo = rt
	}
	if r.URL.Query().Get("fin") == "1" {
		p.Notice = "Votre session a pris fin. Merci de vous reconnecter."
	}
	if p.Aidant != nil && p.Notice == "" {
		http.Redirect(w, r, "/tableau-de-bord", http.StatusSeeOther)
		return nil
	}
	s.render(w, r, http.StatusOK, "connexion", p)
	return nil
}

// aidantLogin sends the browser to the aidants' identity provider.
func (s *Server) aidantLogin(w http.ResponseWriter, r *http.Request) error {
	ret := r.URL.Query().Get("retour")
	if !auth.LocalPath(ret) {
		// An aidant of several organisations picks the current one first;
		// the others go on to their dashboard.
		ret = "/structures?apres=connexion"
	}
	target, err := s.auth.BeginAidantLogin(w, r, ret)
	if err != nil {
		return err
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

// aidantStepUp asks a signed-in aidant to authenticate again.
func (s *Server) aidantStepUp(w http.ResponseWriter, r *http.Request) error {
	if auth.PrincipalFrom(r.Context()) == nil {
		return auth.ErrNoSession
	}
	ret := r.URL.Query().Get("retour")
	if !auth.LocalPath(ret) {
		ret = "/tableau-de-bord"
	}
	target, err := s.auth.BeginStepUp(w, r, ret)
	if err != nil {
		return err
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

type refusalPage struct {
	Page
	Heading, Message, Help string
	Retry, RetryLabel      string
}

// aidantCallback is the aidants' provider's own redirect URI.
func (s *Server) aidantCallback(w http.ResponseWriter, r *http.Request) error {
	a, err := s.auth.Complete(w, r, auth.Aidants)
	if err == nil {
		err = s.auth.FinishAidant(w, r, a)
	}
	if err == nil {
		// An authentication on the way to a service's request counts for
		// it, to the second (max_age, prompt=login).
		target, err := s.authenticatedFor(r, a.ReturnTo, a.AuthTime)
		if err != nil {
			return err
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
		return nil
	}
	p := &refusalPage{Page: s.base(r), Retry: "/connexion/aidant", RetryLabel: "Recommencer la connexion"}
	status := http.StatusBadRequest
	var refused *auth.RefusedError
	switch {
	case errors.As(err, &refused):
		status = http.StatusForbidden
		p.Heading = "Accès refusé"
		p.Message = "Votre compte ne permet pas d'utiliser Aidants pour le moment."
		p.Help = "Si vous pensez que c'est une erreur, contactez la personne référente de votre structure : elle peut vérifier votre inscription et votre habilitation."
		p.Retry, p.RetryLabel = "/", "Retour à l'accueil"
	case errors.Is(err, auth.ErrMFARequired):
		status = http.StatusForbidden
		p.Heading = "Double authentification nécessaire"
		p.Message = "Pour protéger les personnes que vous accompagnez, Aidants demande une connexion avec double authentification (un code à usage unique ou une clé de sécurité en plus du mot de passe)."
		p.Help = "Activez la double authentification sur votre compte professionnel, puis reconnectez-vous."
	case errors.Is(err, auth.ErrCancelled):
		status = http.StatusOK
		p.Heading = "Connexion annulée"
		p.Message = "Vous avez annulé la connexion. Vous pouvez recommencer quand vous le souhaitez."
	case errors.Is(err, auth.ErrBadCallback):
		p.Heading = "Cette connexion n'est plus valable"
		p.Message = "Le retour du fournisseur d'identité a déjà servi, a expiré, ou a été ouvert dans un autre navigateur. Par sécurité, recommencez la connexion."
	case errors.Is(err, auth.ErrBadToken):
		p.Heading = "La connexion n'a pas pu être vérifiée"
		p.Message = "La réponse du fournisseur d'identité n'a pas pu être vérifiée. Par sécurité, la connexion n'est pas ouverte."
		p.Help = "Recommencez ; si cela se reproduit, prévenez l'équipe qui gère le service."
	default:
		return err
	}
	s.logger.Info("sign-in refused", "request_id", requestID(r.Context()), "err", err.Error())
	s.metrics.signInRefused(auth.Aidants, err)
	s.render(w, r, status, "refus", p)
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	target, err := s.auth.LogoutAidant(w, r)
	if err != nil {
		return err
	}
	if target == "" {
		target = "/deconnecte"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

type loggedOutPage struct{ Page }

func (s *Server) loggedOut(w http.ResponseWriter, r *http.Request) error {
	s.render(w, r, http.StatusOK, "deconnecte", &loggedOutPage{Page: s.base(r)})
	return nil
}

type dashboardPage struct {
	Page
	Mandates []mandate.View
	Now      time.Time
	Several  bool // the aidant works in several organisations
}

// dashboard shows the aidant their organisation's active mandates.
func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	ms, err := s.mandates.Mandates(r.Context(), p.OrganisationID, mandate.Active)
	if err != nil {
		return err
	}
	if len(ms) > 10 {
		ms = ms[:10]
	}
	orgs, err := s.auth.Organisations(r.Context(), p.AidantID)
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "tableau-de-bord", &dashboardPage{Page: s.base(r), Mandates: ms, Now: s.now(), Several: len(orgs) > 1})
	return nil
}
