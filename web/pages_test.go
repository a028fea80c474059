package web

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aidants/auth"
	"aidants/templates"
)

// samples gives every page its own typed data, as its handler does.
func samples() map[string]any {
	camille := &auth.Principal{AidantID: "aid_1", GivenName: "Camille", FamilyName: "Martin",
		OrganisationName: "France Services de Nantes", SIRET: "98765432100015", IsAidant: true}
	base := Page{Dev: true, Aidant: camille, RequestID: "abc123", Flash: "Enregistré."}
	return map[string]any{
		"home":            &homePage{Page: base},
		"connexion":       &connexionPage{Page: base, ReturnTo: "/tableau-de-bord", Notice: "Votre session a pris fin."},
		"refus":           &refusalPage{Page: base, Heading: "Accès refusé", Message: "Non.", Help: "Contactez.", Retry: "/", RetryLabel: "Retour"},
		"erreur":          &errorPage{Page: base, Heading: "Erreur", Message: "Désolé."},
		"tableau-de-bord": &dashboardPage{Page: base, Mandates: []mandateRow{{Usager: "J. L.", Demarches: "Logement", Until: "1er mars 2027", Status: "actif"}}},
		"deconnecte":      &loggedOutPage{Page: base},
		"journal-public":  &journalPage{Page: base, Checkpoint: "o\n1\nAA==\n", Size: 1, Key: "o+1+AA", Origin: "o"},
	}
}

func TestEveryPageRendersWithItsData(t *testing.T) {
	set, err := templates.Parse("", funcs)
	if err != nil {
		t.Fatal(err)
	}
	data := samples()
	for _, name := range set.Names() {
		d, ok := data[name]
		if !ok {
			t.Errorf("page %q has no sample data in this test", name)
			continue
		}
		var buf bytes.Buffer
		if err := set.Render(&buf, name, d); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		html := buf.String()
		for _, want := range []string{`<html lang="fr">`, "Mode développement", `<main id="contenu"`, "Camille"} {
			if !strings.Contains(html, want) {
				t.Errorf("%s: missing %q", name, want)
			}
		}
		if strings.Contains(html, "<no value>") {
			t.Errorf("%s: a field is missing from its data", name)
		}
	}
}

func TestOverrideDirectoryReplacesAPageAndAnAsset(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "templates"), 0o755)
	os.MkdirAll(filepath.Join(dir, "static"), 0o755)
	os.WriteFile(filepath.Join(dir, "templates", "home.html"), []byte(`{{define "title"}}Chez nous{{end}}{{define "main"}}<p>Accueil de la collectivité</p>{{end}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "static", "aidants.css"), []byte(`body{color:black}`), 0o644)
	set, err := templates.Parse(dir, funcs)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := set.Render(&buf, "home", &homePage{}); err != nil || !strings.Contains(buf.String(), "Accueil de la collectivité") {
		t.Fatalf("override not used: %v\n%s", err, buf.String())
	}
	css, err := templatesStatic(dir, "aidants.css")
	if err != nil || css != "body{color:black}" {
		t.Fatalf("static override not used: %q %v", css, err)
	}
	// A broken override stops the service at start.
	os.WriteFile(filepath.Join(dir, "templates", "home.html"), []byte(`{{define "main"}}{{.Nope`), 0o644)
	if _, err := templates.Parse(dir, funcs); err == nil {
		t.Fatal("a broken template was accepted")
	}
}

func templatesStatic(dir, name string) (string, error) {
	b, err := fs.ReadFile(templates.Static(dir), name)
	return string(b), err
}

func TestFrenchDates(t *testing.T) {
	d := time.Date(2026, 3, 12, 13, 5, 0, 0, time.UTC) // 14 h 05 in Paris (CET)
	if got := frDateTime(d); got != "12 mars 2026 à 14 h 05" {
		t.Errorf("frDateTime = %q", got)
	}
	if got := frDate(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)); got != "1er juillet 2026" {
		t.Errorf("frDate = %q", got)
	}
}
