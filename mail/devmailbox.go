package mail

import (
	"bytes"
	"context"
	"encoding/base64"
	"html"
	htmltemplate "html/template"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DevMailboxPath is where development mode serves its mailbox.
const DevMailboxPath = "/dev/courriels"

// DevMailboxSize is how many messages the development mailbox keeps.
const DevMailboxSize = 200

// DevMailbox is the transport of development mode without a relay: it
// takes every message as a relay would, keeps the last DevMailboxSize in
// memory, and shows them, read back from the very bytes a relay would have
// received, at DevMailboxPath (list and read, in French). It is an
// http.Handler for DevMailboxPath and DevMailboxPath/{n}.
type DevMailbox struct {
	mu   sync.Mutex
	msgs []*DevMessage // oldest first
	next int

	mux *http.ServeMux
}

// DevMessage is a message in the development mailbox, as a mail client
// would read it.
type DevMessage struct {
	N         int // its number in the mailbox, in its address
	Received  time.Time
	MessageID string
	From      string
	To        string
	Subject   string
	Date      string
	Text      string // the decoded text/plain part
	HTML      string // the decoded text/html part
	Links     []string
	Raw       string // the message as a relay receives it
}

// NewDevMailbox returns an empty mailbox.
func NewDevMailbox() *DevMailbox {
	d := &DevMailbox{next: 1, mux: http.NewServeMux()}
	d.mux.HandleFunc("GET "+DevMailboxPath+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, DevMailboxPath, http.StatusMovedPermanently)
	})
	d.mux.HandleFunc("GET "+DevMailboxPath, d.list)
	d.mux.HandleFunc("GET "+DevMailboxPath+"/{n}", d.show)
	return d
}

// Send keeps msgs: they are taken at once.
func (d *DevMailbox) Send(_ context.Context, msgs []Outgoing) []error {
	errs := make([]error, len(msgs))
	for i := range msgs {
		raw, err := msgs[i].MIME()
		if err != nil {
			errs[i] = err
			continue
		}
		m := readMessage(raw)
		d.mu.Lock()
		m.N, m.Received = d.next, time.Now()
		d.next++
		d.msgs = append(d.msgs, m)
		if len(d.msgs) > DevMailboxSize {
			d.msgs = slices.Delete(d.msgs, 0, len(d.msgs)-DevMailboxSize)
		}
		d.mu.Unlock()
	}
	return errs
}

// Messages returns the messages kept, oldest first.
func (d *DevMailbox) Messages() []DevMessage {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DevMessage, len(d.msgs))
	for i, m := range d.msgs {
		out[i] = *m
	}
	return out
}

// readMessage parses a message as a mail client does: the header decoded
// (RFC 2047), the text and HTML parts of a multipart/alternative decoded
// from their transfer encoding. What it cannot parse stays in Raw.
func readMessage(raw []byte) *DevMessage {
	m := &DevMessage{Raw: string(raw)}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return m
	}
	dec := new(mime.WordDecoder)
	header := func(k string) string {
		v := msg.Header.Get(k)
		if d, err := dec.DecodeHeader(v); err == nil {
			return d
		}
		return v
	}
	// Addresses as a mail client shows them: "Name <address>", or the
	// address alone.
	addresses := func(k string) string {
		list, err := msg.Header.AddressList(k)
		if err != nil {
			return header(k)
		}
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = a.Address
			if a.Name != "" {
				out[i] = a.Name + " <" + a.Address + ">"
			}
		}
		return strings.Join(out, ", ")
	}
	m.MessageID, m.From, m.To, m.Subject, m.Date = header("Message-Id"), addresses("From"), addresses("To"), header("Subject"), header("Date")
	readPart(m, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
	for _, h := range hrefs.FindAllStringSubmatch(m.HTML, -1) {
		m.Links = append(m.Links, html.UnescapeString(h[1]))
	}
	return m
}

func readPart(m *DevMessage, contentType, encoding string, body io.Reader) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			readPart(m, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p)
		}
	}
	switch strings.ToLower(encoding) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, &crlfSkipper{r: body})
	}
	b, err := io.ReadAll(io.LimitReader(body, 4<<20))
	if err != nil {
		return
	}
	switch mt {
	case "text/plain":
		m.Text = strings.ReplaceAll(string(b), "\r\n", "\n")
	case "text/html":
		m.HTML = string(b)
	}
}

// crlfSkipper drops the line breaks of a base64 body.
type crlfSkipper struct{ r io.Reader }

func (c *crlfSkipper) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	j := 0
	for _, b := range p[:n] {
		if b != '\r' && b != '\n' {
			p[j] = b
			j++
		}
	}
	return j, err
}

// ServeHTTP serves the mailbox's pages.
func (d *DevMailbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The message's own HTML is shown in a sandboxed frame (no script, no
	// form, an origin of its own); its style sheet is inline.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	d.mux.ServeHTTP(w, r)
}

func (d *DevMailbox) list(w http.ResponseWriter, r *http.Request) {
	msgs := d.Messages()
	slices.Reverse(msgs) // newest first
	d.render(w, http.StatusOK, devPage{Title: "Courriels envoyés", List: msgs, Size: DevMailboxSize})
}

func (d *DevMailbox) show(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	var found *DevMessage
	if err == nil {
		for _, m := range d.Messages() {
			if m.N == n {
				found = &m
				break
			}
		}
	}
	if found == nil {
		d.render(w, http.StatusNotFound, devPage{Title: "Courriel introuvable", Missing: true})
		return
	}
	d.render(w, http.StatusOK, devPage{Title: found.Subject, Message: found})
}

type devPage struct {
	Title   string
	List    []DevMessage
	Size    int
	Message *DevMessage
	Missing bool
}

func (d *DevMailbox) render(w http.ResponseWriter, status int, p devPage) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	devTemplate.Execute(w, p)
}

var devTemplate = htmltemplate.Must(htmltemplate.New("courriels").Funcs(funcs).Parse(`<!doctype html>
<html lang="fr">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} — Aidants (développement)</title>
<link rel="stylesheet" href="/static/aidants.css"></head>
<body>
<a class="skip" href="#contenu">Aller au contenu</a>
<header><div class="dev-banner" role="note"><strong>Mode développement</strong> — aucun courriel ne part : ils arrivent ici. <a href="/">Retour au service</a></div></header>
<main id="contenu" class="wrap">
{{- if .Message}}{{with .Message}}
<p><a href="` + DevMailboxPath + `">Tous les courriels</a></p>
<h1>{{.Subject}}</h1>
<dl>
<dt>De</dt><dd>{{.From}}</dd>
<dt>À</dt><dd>{{.To}}</dd>
<dt>Date</dt><dd>{{.Date}}</dd>
<dt>Message-ID</dt><dd><code>{{.MessageID}}</code></dd>
</dl>
{{- if .HTML}}
<h2>Version HTML</h2>
<iframe sandbox title="Version HTML du courriel" srcdoc="{{.HTML}}" style="width:100%;min-height:32rem;border:1px solid #c9c9d6"></iframe>
{{- end}}
{{- if .Links}}
<h2>Liens du courriel</h2>
<ul>{{range .Links}}<li><a href="{{.}}">{{.}}</a></li>{{end}}</ul>
{{- end}}
<h2>Version texte</h2>
<pre style="white-space:pre-wrap">{{.Text}}</pre>
<details><summary>Source du message</summary><pre style="white-space:pre-wrap">{{.Raw}}</pre></details>
{{- end}}
{{- else if .Missing}}
<h1>Courriel introuvable</h1>
<p>Ce courriel n'existe pas ou n'est plus gardé (seuls les derniers le sont, jusqu'à l'arrêt du serveur).</p>
<p><a href="` + DevMailboxPath + `">Tous les courriels</a></p>
{{- else}}
<h1>Courriels envoyés</h1>
<p>En mode développement, les courriels ne partent pas : ils arrivent ici, tels qu'un serveur de messagerie les aurait reçus. Les {{.Size}} derniers sont gardés jusqu'à l'arrêt du serveur.</p>
{{- if .List}}
<table>
<caption>Du plus récent au plus ancien</caption>
<thead><tr><th scope="col">Reçu le</th><th scope="col">Destinataire</th><th scope="col">Objet</th></tr></thead>
<tbody>
{{- range .List}}
<tr><td>{{datetime .Received}}</td><td>{{.To}}</td><td><a href="` + DevMailboxPath + `/{{.N}}">{{.Subject}}</a></td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p>Aucun courriel pour l'instant.</p>
{{- end}}
{{- end}}
</main>
</body>
</html>
`))
