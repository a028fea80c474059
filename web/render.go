package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"aidants/auth"
	"aidants/mandate"
	"aidants/templates"
)

// Page is what every page shows around its content.
type Page struct {
	Dev       bool
	Aidant    *auth.Principal
	Space     *auth.Usager // the person signed in to their own space
	Flash     string
	RequestID string
}

func (s *Server) base(r *http.Request) Page {
	return Page{Dev: s.opts.Dev, Aidant: auth.PrincipalFrom(r.Context()), Space: auth.UsagerFrom(r.Context()), RequestID: requestID(r.Context())}
}

// render executes a page into a buffer first, so a template failure gives
// a clean error page rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf bytes.Buffer
	if err := s.pages.Render(&buf, page, data); err != nil {
		s.logger.Error("render", "request_id", requestID(r.Context()), "page", page, "err", err)
		if page == "erreur" {
			http.Error(w, "Une erreur est survenue.", http.StatusInternalServerError)
			return
		}
		s.renderError(w, r, http.StatusInternalServerError, msgInternal)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// page adapts a handler returning an error, with the aidant's principal
// (if any) loaded into the context.
func (s *Server) page(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.auth.Aidant(w, r)
		switch {
		case err == nil:
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		case errors.Is(err, auth.ErrNoSession):
		case errors.As(err, new(*auth.SessionEndedError)):
			// A public page stays readable; protected pages say the
			// session ended and ask to sign in again.
			r = r.WithContext(context.WithValue(r.Context(), sessionEndedKey, err))
		default:
			s.fail(w, r, err)
			return
		}
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
}

// aidantOnly refuses requests without a signed-in aidant.
func (s *Server) aidantOnly(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if auth.PrincipalFrom(r.Context()) == nil {
			if ended, ok := r.Context().Value(sessionEndedKey).(error); ok {
				return ended
			}
			return auth.ErrNoSession
		}
		return h(w, r)
	}
}

// apiHandler adapts an API handler; its errors are JSON or text, not pages.
func (s *Server) apiHandler(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.failAPI(w, r, err)
		}
	})
}

func staticHandler(overrideDir string) http.Handler {
	fsys := templates.Static(overrideDir)
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || r.URL.Path == "" {
			http.NotFound(w, r)
			return
		}
		if _, err := fs.Stat(fsys, r.URL.Path); err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// frDate writes "12 mars 2026" in Paris time.
func frDate(t time.Time) string { return mandate.FrenchDate(t) }

// frDateTime writes "12 mars 2026 à 14 h 05" in Paris time.
func frDateTime(t time.Time) string { return mandate.FrenchDateTime(t) }

var funcs = template.FuncMap{
	"date":         frDate,
	"datetime":     frDateTime,
	"demarche":     mandate.Label,
	"demarches":    labels,
	"birthdate":    frBirthdate,
	"day":          frBirthdate, // a YYYY-MM-DD date as "12 mars 2026"
	"status":       func(s string) string { return statusLabels[s] },
	"draftStatus":  func(s string) string { return draftLabels[s] },
	"verifyStatus": func(s string) string { return verifyLabels[s] },
	"age":          frAge,
	"bornOn":       bornOn,
	"capital":      capital,
	"gendered":     gendered,
	"ref":          mandate.Ref,
	"explain":      mandate.Explain,
	"reason":       mandate.ReasonLabel,
}

// frAge writes a duration as people say it: "moins d'une minute",
// "3 minutes", "2 heures", "5 jours".
func frAge(d time.Duration) string {
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	switch {
	case d < time.Minute:
		return "moins d'une minute"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute", "minutes")
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "heure", "heures")
	default:
		return plural(int(d/(24*time.Hour)), "jour", "jours")
	}
}

var statusLabels = map[string]string{mandate.Active: "En cours", mandate.Expired: "Arrivé à échéance", mandate.Revoked: "Retiré"}

var draftLabels = map[string]string{mandate.DraftPending: "en attente de la personne", mandate.DraftIdentified: "personne identifiée, en attente de sa décision",
	mandate.DraftAccepted: "accepté", mandate.DraftRefused: "refusé", mandate.DraftExpired: "expiré", mandate.DraftCompleted: "signé"}

var verifyLabels = map[string]string{mandate.VerifyValid: "Valide", mandate.VerifyRevoked: "Retiré", mandate.VerifyExpired: "Arrivé à échéance",
	mandate.VerifyUnknown: "Inconnu", mandate.VerifyInvalid: "Invalide"}

// frBirthdate writes a YYYY-MM-DD date as 12/03/1948.
// frBirthdate writes a birth date ("1948-03-12", as FranceConnect gives
// it) as "12 mars 1948".
func frBirthdate(s string) string {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return s
	}
	return mandate.FrenchDay(t)
}

// bornOn says when a person was born, in the words their gender (as
// FranceConnect gives it) calls for: "née le 12 mars 1948", "né le…",
// and, when it is not known, "date de naissance : 12 mars 1948".
func bornOn(gender, birthdate string) string {
	switch gender {
	case "female":
		return "née le " + frBirthdate(birthdate)
	case "male":
		return "né le " + frBirthdate(birthdate)
	}
	return "date de naissance : " + frBirthdate(birthdate)
}

// capital writes the first letter of s in capitals.
func capital(s string) string {
	if r, size := utf8.DecodeRuneInString(s); r != utf8.RuneError {
		return string(unicode.ToUpper(r)) + s[size:]
	}
	return s
}

// gendered picks the word for a person's gender: fem for "female", masc
// for "male", other when it is not known (a rephrasing, never a median
// dot).
func gendered(gender, fem, masc, other string) string {
	switch gender {
	case "female":
		return fem
	case "male":
		return masc
	}
	return other
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
