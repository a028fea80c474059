package mail

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	htmltemplate "html/template"
	"regexp"
	"strings"
	texttemplate "text/template"

	"aidants/mandate"
)

// Template is one kind of message over data of type T: its subject, its
// text body and its HTML body are templates of the same data, so that the
// two bodies say the same thing. The HTML body is set in a common layout
// (a narrow column, large type, no image) and both bodies end with the same
// footer.
//
// Template functions: date (12 mars 2026), datetime (12 mars 2026 à 14 h
// 05), both in Paris time, and list (a, b et c).
type Template[T any] struct {
	name    string
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// Footer ends every message, text and HTML.
const Footer = "Ce courriel vous a été envoyé automatiquement par Aidants. Merci de ne pas y répondre."

var funcs = map[string]any{
	"date":     mandate.FrenchDate,
	"datetime": mandate.FrenchDateTime,
	"list":     frList,
}

var layout = htmltemplate.Must(htmltemplate.New("layout").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>{{.Subject}}</title>
<style>
body { margin: 0; padding: 0; background: #f3f4f8; color: #1e1e1e; font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; font-size: 16px; line-height: 1.55; }
.page { max-width: 36em; margin: 0 auto; padding: 1.5em 1.25em; background: #ffffff; }
h1 { font-size: 1.35em; line-height: 1.3; margin: 0 0 1em; }
a { color: #1f3d99; text-decoration: underline; word-break: break-word; }
.bouton { display: inline-block; padding: .75em 1.25em; background: #1f3d99; color: #ffffff; text-decoration: none; border-radius: 4px; font-weight: bold; }
dl, table { margin: 1em 0; }
dt { font-weight: bold; margin-top: .5em; }
dd { margin: 0 0 .25em; }
td, th { text-align: left; vertical-align: top; padding: .25em .75em .25em 0; }
.pied { margin-top: 2em; padding-top: 1em; border-top: 1px solid #c9c9d6; font-size: .9em; color: #4d4d4d; }
</style>
</head>
<body>
<div class="page" style="max-width:36em;margin:0 auto;padding:1.5em 1.25em;background:#ffffff;color:#1e1e1e;font-size:16px;line-height:1.55">
{{template "body" .Data}}
<p class="pied">` + Footer + `</p>
</div>
</body>
</html>
`))

// NewTemplate parses a kind of message. subject and text are text/template
// sources (no escaping: they are plain text), htmlSrc an html/template source
// (escaped by context) of what goes inside the layout's body.
func NewTemplate[T any](name, subject, text, htmlSrc string) (*Template[T], error) {
	t := &Template[T]{name: name}
	var err error
	if t.subject, err = texttemplate.New(name + ".subject").Funcs(funcs).Option("missingkey=error").Parse(subject); err != nil {
		return nil, fmt.Errorf("mail: template %s: subject: %w", name, err)
	}
	if t.text, err = texttemplate.New(name + ".txt").Funcs(funcs).Option("missingkey=error").Parse(text); err != nil {
		return nil, fmt.Errorf("mail: template %s: text: %w", name, err)
	}
	h, err := layout.Clone()
	if err != nil {
		return nil, err
	}
	if _, err = h.New("body").Option("missingkey=error").Parse(htmlSrc); err != nil {
		return nil, fmt.Errorf("mail: template %s: html: %w", name, err)
	}
	t.html = h
	return t, nil
}

// MustTemplate is NewTemplate for package variables: it panics on a
// template that does not parse.
func MustTemplate[T any](name, subject, text, htmlSrc string) *Template[T] {
	t, err := NewTemplate[T](name, subject, text, htmlSrc)
	if err != nil {
		panic(err)
	}
	return t
}

// ErrTracking is wrapped by Render's error when the HTML would load
// anything remote (an image, a style sheet…) or holds a link the text body
// does not show: what a tracking pixel or a tracking link would be.
var ErrTracking = errors.New("mail: remote content or hidden link")

// Render makes the message for data. It refuses HTML that would load
// remote content or link anywhere the text body does not show.
func (t *Template[T]) Render(data T) (Content, error) {
	var b bytes.Buffer
	if err := t.subject.Execute(&b, data); err != nil {
		return Content{}, fmt.Errorf("mail: render %s: %w", t.name, err)
	}
	c := Content{Subject: strings.Join(strings.Fields(b.String()), " ")}
	b.Reset()
	if err := t.text.Execute(&b, data); err != nil {
		return Content{}, fmt.Errorf("mail: render %s: %w", t.name, err)
	}
	c.Text = tidyText(b.String()) + "\n\n-- \n" + Footer + "\n"
	b.Reset()
	if err := t.html.ExecuteTemplate(&b, "layout", struct {
		Subject string
		Data    T
	}{c.Subject, data}); err != nil {
		return Content{}, fmt.Errorf("mail: render %s: %w", t.name, err)
	}
	c.HTML = b.String()
	if c.Subject == "" {
		return Content{}, fmt.Errorf("mail: render %s: the subject is empty", t.name)
	}
	if err := checkNoTracking(c.HTML, c.Text); err != nil {
		return Content{}, fmt.Errorf("mail: render %s: %w", t.name, err)
	}
	return c, nil
}

var blankLines = regexp.MustCompile(`\n{3,}`)

// tidyText trims the spaces templates leave at line ends and keeps at most
// one blank line in a row.
func tidyText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return strings.TrimSpace(blankLines.ReplaceAllString(strings.Join(lines, "\n"), "\n\n"))
}

var (
	// Anything that makes a mail client fetch something: an element that
	// loads a resource, an attribute that names one, CSS that imports one.
	remote = regexp.MustCompile(`(?i)<\s*(img|image|link|script|iframe|frame|object|embed|video|audio|source|picture|svg|form|input|base|meta\s+http-equiv)\b|\b(src|srcset|background|poster|action|formaction|ping)\s*=|url\s*\(|@import`)
	hrefs  = regexp.MustCompile(`(?i)\bhref\s*=\s*"([^"]*)"`)
)

// checkNoTracking refuses remote content in htmlBody, and links that the
// text body does not show in full.
func checkNoTracking(htmlBody, text string) error {
	if m := remote.FindString(htmlBody); m != "" {
		return fmt.Errorf("%w: the HTML loads remote content (%s)", ErrTracking, m)
	}
	for _, m := range hrefs.FindAllStringSubmatch(htmlBody, -1) {
		link := html.UnescapeString(m[1])
		if !strings.HasPrefix(link, "https://") && !strings.HasPrefix(link, "http://") {
			return fmt.Errorf("%w: the link %q is not an absolute http(s) address", ErrTracking, link)
		}
		if !strings.Contains(text, link) {
			return fmt.Errorf("%w: the link %q is not in the text body", ErrTracking, link)
		}
	}
	return nil
}

// frList writes "a", "a et b", "a, b et c".
func frList(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " et " + items[len(items)-1]
}
