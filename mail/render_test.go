package mail_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"aidants/mail"
)

type actionData struct {
	Service, Aidant, Demarche string
	At                        time.Time
	Link                      string
}

// TestRenderSaysTheSameInTextAndHTML renders a message kind: the subject
// on one line, the text tidy and in French dates (Paris time), the HTML
// escaping the data, both ending with the footer.
func TestRenderSaysTheSameInTextAndHTML(t *testing.T) {
	tmpl := mail.MustTemplate[actionData]("action",
		`{{.Aidant}} a agi pour vous
		auprès de {{.Service}}`,
		`Bonjour,


{{.Aidant}} a fait une démarche « {{.Demarche}} » pour vous auprès de {{.Service}}, le {{datetime .At}}.   

Ce n'était pas d'accord ? {{.Link}}`,
		`<p>{{.Aidant}} a fait une démarche « {{.Demarche}} » pour vous auprès de {{.Service}}, le {{datetime .At}}.</p>
<p><a href="{{.Link}}">Ce n'était pas d'accord</a></p>`)
	c, err := tmpl.Render(actionData{Service: "Impôts <b>", Aidant: "Camille", Demarche: "Argent",
		At: time.Date(2026, 7, 1, 6, 5, 0, 0, time.UTC), Link: "https://aidants.test/objection?a=1&b=2"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "Camille a agi pour vous auprès de Impôts <b>" {
		t.Errorf("subject %q", c.Subject)
	}
	wantText := "Bonjour,\n\nCamille a fait une démarche « Argent » pour vous auprès de Impôts <b>, le 1er juillet 2026 à 8 h 05.\n\n" +
		"Ce n'était pas d'accord ? https://aidants.test/objection?a=1&b=2\n\n-- \n" + mail.Footer + "\n"
	if c.Text != wantText {
		t.Errorf("text:\n%q\nwant\n%q", c.Text, wantText)
	}
	for _, want := range []string{"auprès de Impôts &lt;b&gt;, le 1er juillet 2026 à 8 h 05.", `href="https://aidants.test/objection?a=1&amp;b=2"`,
		"<title>Camille a agi pour vous auprès de Impôts &lt;b&gt;</title>", mail.Footer} {
		if !strings.Contains(c.HTML, want) {
			t.Errorf("HTML lacks %q:\n%s", want, c.HTML)
		}
	}
}

// TestRenderRefusesTracking refuses what would tell the sender that the
// message was opened or which link was followed: remote images, style
// sheets or fonts, and links the text body does not show.
func TestRenderRefusesTracking(t *testing.T) {
	text := "Voir : https://aidants.test/mon-espace"
	for name, html := range map[string]string{
		"remote image":      `<img src="https://pixel.example/p.gif" alt="">`,
		"style sheet":       `<link rel="stylesheet" href="https://aidants.test/mon-espace">`,
		"css import":        `<style>@import "https://fonts.example/f.css";</style>`,
		"css background":    `<p style="background-image:url(https://pixel.example/p.gif)">x</p>`,
		"hidden link":       `<a href="https://clicks.example/r?u=1">Voir</a>`,
		"link with an id":   `<a href="https://aidants.test/mon-espace?utm_source=mail">Voir</a>`,
		"relative link":     `<a href="/mon-espace">Voir</a>`,
		"remote background": `<table background="https://pixel.example/p.gif"></table>`,
	} {
		tmpl := mail.MustTemplate[struct{}]("t", "Objet", text, html)
		if _, err := tmpl.Render(struct{}{}); !errors.Is(err, mail.ErrTracking) {
			t.Errorf("%s: err = %v, want ErrTracking", name, err)
		}
	}
	ok := mail.MustTemplate[struct{}]("t", "Objet", text, `<p><a class="bouton" href="https://aidants.test/mon-espace">Voir</a></p>`)
	if _, err := ok.Render(struct{}{}); err != nil {
		t.Errorf("a link shown in the text: %v", err)
	}
	if _, err := mail.NewTemplate[struct{}]("t", "Objet", "{{.Missing", "<p>x</p>"); err == nil {
		t.Error("a template that does not parse was accepted")
	}
	empty := mail.MustTemplate[struct{ S string }]("t", "{{.S}}", "x", "<p>x</p>")
	if _, err := empty.Render(struct{ S string }{"  "}); err == nil {
		t.Error("an empty subject was accepted")
	}
}
