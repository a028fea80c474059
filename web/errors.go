package web

import (
	"context"
	"errors"
	"net/http"

	"aidants/audit"
	"aidants/auth"
	"aidants/store"
)

// message is a fixed text shown to people for a kind of failure.
type message struct {
	Heading string
	Text    string
}

var (
	msgInternal    = message{"Une erreur est survenue", "Le service n'a pas pu traiter votre demande. Rien n'a été modifié. Réessayez dans un instant."}
	msgNotFound    = message{"Page introuvable", "Cette page n'existe pas, ou vous n'avez pas le droit de la voir."}
	msgBadRequest  = message{"Demande incorrecte", "La demande contient une valeur incorrecte. Rien n'a été modifié."}
	msgCrossSite   = message{"Demande refusée", "Cette demande vient d'un autre site : par sécurité, elle a été refusée et rien n'a été modifié."}
	msgForbidden   = message{"Accès refusé", "Vous n'avez pas le droit de faire cette action."}
	msgUnavailable = message{"Service momentanément indisponible", "Un service dont nous dépendons ne répond pas. Réessayez dans quelques minutes."}
	msgStorage     = message{"Service momentanément indisponible", "Le service ne peut pas enregistrer pour le moment. Rien n'a été modifié. Réessayez dans quelques minutes."}
)

// Error is an error with what to tell the person.
type Error struct {
	Status int
	Msg    message
	Err    error // logged, never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg.Heading + ": " + e.Err.Error()
	}
	return e.Msg.Heading
}

func (e *Error) Unwrap() error { return e.Err }

var errNotFound = &Error{Status: http.StatusNotFound, Msg: msgNotFound}

// badRequest reports a wrong value with a French explanation.
func badRequest(text string) error {
	return &Error{Status: http.StatusBadRequest, Msg: message{msgBadRequest.Heading, text}}
}

// fail turns a handler's error into a page: a fixed French message, the
// request id, and a log line with the detail. Only the errors that say so
// (an *Error, a domain sentinel) are refusals; anything else — a database
// or a service that fails — is the server's error, 500 or 503, and the
// handler that returned it has journaled nothing.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	var ended *auth.SessionEndedError
	switch {
	case errors.As(err, &e):
	case errors.Is(err, auth.ErrNoSession), errors.As(err, &ended):
		s.toLogin(w, r, ended != nil)
		return
	case errors.Is(err, store.ErrNotFound):
		e = &Error{Status: http.StatusNotFound, Msg: msgNotFound, Err: err}
	case errors.Is(err, auth.ErrProviderUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e = &Error{Status: http.StatusServiceUnavailable, Msg: msgUnavailable, Err: err}
	case errors.Is(err, audit.ErrUnavailable):
		w.Header().Set("Retry-After", "30")
		e = &Error{Status: http.StatusServiceUnavailable, Msg: msgStorage, Err: err}
	default:
		e = &Error{Status: http.StatusInternalServerError, Msg: msgInternal, Err: err}
	}
	attrs := []any{"request_id", requestID(r.Context()), "status", e.Status, "path", r.URL.Path}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err.Error())
	}
	if e.Status >= 500 {
		s.logger.Error("request failed", attrs...)
	} else {
		s.logger.Info("request refused", attrs...)
	}
	s.renderError(w, r, e.Status, e.Msg)
}

// toLogin sends a person without a valid session to the sign-in page,
// coming back here afterwards for a page they were reading.
func (s *Server) toLogin(w http.ResponseWriter, r *http.Request, ended bool) {
	target := "/connexion"
	q := ""
	if r.Method == http.MethodGet && auth.LocalPath(r.URL.RequestURI()) {
		q = "retour=" + urlQueryEscape(r.URL.RequestURI())
	}
	if ended {
		if q != "" {
			q += "&"
		}
		q += "fin=1"
	}
	if q != "" {
		target += "?" + q
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

type errorPage struct {
	Page
	Heading, Message string
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, m message) {
	p := errorPage{Page: s.base(r), Heading: m.Heading, Message: m.Text}
	s.render(w, r, status, "erreur", &p)
}
