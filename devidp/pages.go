package devidp

import (
	"bytes"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// notice is shown on every page so nobody mistakes the provider for a real one.
const notice = "Fournisseur d'identité de développement — identités fictives"

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Heading}} — {{.Title}}</title>
{{if .StylesheetURL}}<link rel="stylesheet" href="{{.StylesheetURL}}">{{end}}
</head>
<body>
<a class="skip" href="#contenu">Aller au contenu</a>
<header>
<p><strong>{{.Title}}</strong></p>
<p role="note" class="dev-banner">{{.Notice}}</p>
</header>
<main id="contenu">
<h1>{{.Heading}}</h1>
{{end}}

{{define "foot"}}</main>
</body>
</html>
{{end}}

{{define "pick"}}{{template "head" .}}
<p>L'application <strong>{{.ClientID}}</strong> demande votre identité.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="request" value="{{.RequestID}}">
<fieldset>
<legend>Choisissez l'identité fictive avec laquelle vous connecter :</legend>
<ul>
{{range .Identities}}<li><button type="submit" name="identity" value="{{.Sub}}">{{.Label}}</button></li>
{{end}}</ul>
</fieldset>
<p><button type="submit" name="cancel" value="1">Annuler</button></p>
</form>
{{template "foot" .}}{{end}}

{{define "message"}}{{template "head" .}}
<p>{{.Message}}</p>
{{template "foot" .}}{{end}}
`))

// pageHead is what every page shows above its content.
type pageHead struct {
	Title         string
	Heading       string
	Notice        string
	StylesheetURL string
}

// pickPage is the data of the identity picker.
type pickPage struct {
	pageHead
	ClientID   string
	Action     string
	RequestID  string
	Identities []pickIdentity
}

type pickIdentity struct {
	Sub   string
	Label string
}

// messagePage is the data of a page that only says something.
type messagePage struct {
	pageHead
	Message string
}

func (p *Provider) head(heading string) pageHead {
	return pageHead{Title: p.title, Heading: heading, Notice: notice, StylesheetURL: p.stylesheetURL}
}

// pageError is an HTML answer with a fixed French message.
type pageError struct {
	status  int
	heading string
	message string
}

func (e *pageError) Error() string { return "devidp: " + e.heading }

// redirectError is an authorization error sent back to a checked
// redirect_uri (RFC 6749 §4.1.2.1, with iss from RFC 9207).
type redirectError struct {
	redirectURI string
	state       string
	code        string
	description string
}

func (e *redirectError) Error() string { return "devidp: authorize: " + e.code }

// page adapts a browser handler: it turns its error into a redirect or a
// French page, never showing an internal error's text.
func (p *Provider) page(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var pe *pageError
		var re *redirectError
		switch {
		case errors.As(err, &re):
			status := http.StatusFound
			if r.Method == http.MethodPost {
				status = http.StatusSeeOther
			}
			p.redirect(w, r, re.redirectURI, status, url.Values{
				"error":             {re.code},
				"error_description": {re.description},
				"state":             {re.state},
				"iss":               {p.issuer},
			})
		case errors.As(err, &pe):
			p.render(w, pe.status, "message", messagePage{pageHead: p.head(pe.heading), Message: pe.message}, "")
		default:
			slog.Error("devidp: page", "issuer", p.issuer, "path", r.URL.Path, "err", err)
			p.render(w, http.StatusInternalServerError, "message", messagePage{
				pageHead: p.head("Erreur interne"),
				Message:  "Le fournisseur d'identité de développement a rencontré une erreur. Réessayez.",
			}, "")
		}
	}
}

// render writes an HTML page with the security headers. formTarget, when
// set, is an extra origin the page's form may lead to (the redirect_uri's,
// since the form's answer is a redirect there).
func (p *Provider) render(w http.ResponseWriter, status int, name string, data any, formTarget string) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		slog.Error("devidp: render page", "page", name, "err", err)
		http.Error(w, "Erreur interne", http.StatusInternalServerError)
		return
	}
	formAction := "'self'"
	if formTarget != "" {
		formAction += " " + formTarget
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action "+formAction)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// redirect sends the browser to target with params added to its query.
// Empty params are left out.
func (p *Provider) redirect(w http.ResponseWriter, r *http.Request, target string, status int, params url.Values) {
	u, err := url.Parse(target)
	if err != nil { // registered URIs were checked by New
		p.render(w, http.StatusInternalServerError, "message", messagePage{
			pageHead: p.head("Erreur interne"),
			Message:  "L'adresse de retour enregistrée est invalide.",
		}, "")
		return
	}
	q := u.Query()
	for k, vs := range params {
		for _, v := range vs {
			if v != "" {
				q.Add(k, v)
			}
		}
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), status)
}

// origin returns scheme://host of a registered URI, for the CSP form-action
// directive, or "" when it cannot be written there safely.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || strings.ContainsAny(u.Host, " ;,'\"") {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
