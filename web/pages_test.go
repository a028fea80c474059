package web

import (
	"bytes"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aidants/auth"
	"aidants/mandate"
	"aidants/objection"
	"aidants/org"
	"aidants/provider"
	"aidants/stats"
	"aidants/store"
	"aidants/templates"
)

// samples gives every page its own typed data, as its handler does.
func samples() map[string]any {
	camille := &auth.Principal{AidantID: "aid_1", GivenName: "Camille", FamilyName: "Martin",
		OrganisationName: "France Services de Nantes", SIRET: "98765432100015", IsAidant: true}
	base := Page{Dev: true, Aidant: camille, RequestID: "abc123", Flash: "Enregistré."}
	now := time.Date(2026, 3, 12, 13, 5, 0, 0, time.UTC)
	spaceBase := base
	spaceBase.Space = &auth.Usager{UsagerID: "usa_1", GivenName: "Camille", Family: "Lefèvre"}
	draft := mandate.Draft{ID: "drf_1", Demarches: store.List{"logement"}, Duration: "1m", Method: mandate.OnSite,
		CreatedAt: store.T(now), ExpiresAt: store.T(now)}
	usager := mandate.Usager{ID: "usa_1", GivenName: "Joséphine", FamilyName: "Lefèvre", Birthdate: "1948-03-12"}
	view := mandate.View{Mandate: mandate.Mandate{ID: "man_1", CreatedAt: store.T(now), ExpiresAt: store.T(now.AddDate(0, 1, 0)),
		Method: mandate.OnSite, Demarches: []mandate.MandateDemarche{{Code: "logement"}, {Code: "argent", RevokedAt: store.T(now), Reason: "superseded"}}},
		OrgName: "France Services", SIRET: "98765432100015", UsagerGiven: "Joséphine", UsagerFamily: "Lefèvre", UsagerBirth: "1948-03-12",
		AidantGiven: "Camille", AidantFamily: "Martin"}
	return map[string]any{
		"home":                   &homePage{Page: base},
		"connexion":              &connexionPage{Page: base, ReturnTo: "/tableau-de-bord", Notice: "Votre session a pris fin."},
		"refus":                  &refusalPage{Page: base, Heading: "Accès refusé", Message: "Non.", Help: "Contactez.", Retry: "/", RetryLabel: "Retour"},
		"erreur":                 &errorPage{Page: base, Heading: "Erreur", Message: "Désolé."},
		"tableau-de-bord":        &dashboardPage{Page: base, Mandates: []mandate.View{view}, Now: now},
		"mandats":                &mandatesPage{Page: base, Filter: "actifs", Mandates: []mandate.View{view}, Drafts: []draftRow{{Draft: draft, State: mandate.DraftPending}}, Now: now},
		"mandat-nouveau":         &newMandatePage{Page: base, Demarches: []demarcheChoice{{Code: "argent", Label: "Argent"}}, Durations: mandate.Durations},
		"mandat-lien":            &linkPage{Page: base, Draft: &draft, URL: "https://x/consentement?jeton=abc", QR: "data:image/png;base64,AA==", Expires: now},
		"brouillon":              &draftPage{Page: base, Draft: &draft, State: mandate.DraftIdentified, Usager: &usager, Org: "France Services", Until: now},
		"mandat":                 &mandatePage{Page: base, M: &view, Status: mandate.Active, Durations: mandate.Durations, Now: now},
		"attestation":            &attestationPage{Page: base, M: &view, Status: mandate.Active, VerifyURL: "https://x/v", QR: "data:image/png;base64,AA==", Printed: now},
		"attestation-revocation": &attestationPage{Page: base, M: &view, Status: mandate.Revoked, VerifyURL: "https://x/v", QR: "data:image/png;base64,AA==", Printed: now},
		"verification":           &verifyPage{Page: base, Checked: true, Result: &mandate.Verification{Status: mandate.VerifyValid, Reason: "Valide.", Claims: &mandate.Claims{ID: "man_1"}}, Labels: []string{"Logement"}, Issued: now, Expires: now},
		"consentement":           &consentPage{Page: base, Draft: &draft, State: mandate.DraftPending, OrgName: "France Services", AidantName: "Camille", Labels: []string{"Logement"}, Duration: "1 mois", Until: now, Link: "abc"},
		"consentement-recap":     &consentPage{Page: base, Draft: &draft, State: mandate.DraftIdentified, OrgName: "France Services", AidantName: "Camille", Labels: []string{"Logement"}, Duration: "1 mois", Until: now, Usager: &usager, Link: "abc"},
		"mon-espace-connexion":   &spaceLoginPage{Page: base, Ended: true},
		"mon-espace":             &spacePage{Page: spaceBase, Person: &usager, Mandates: []mandate.View{view}, History: []historyLine{{Index: 3, When: now, Text: "Vous avez donné votre accord."}}, Older: 2, Newer: true, Now: now, Notice: "Fait."},
		"mon-espace-revocation":  &spaceRevokePage{Page: spaceBase, M: &view, Demarche: "logement", Label: "Logement"},
		"mon-espace-deconnecte":  &spaceLoggedOutPage{Page: base},
		"consentement-fin":       &consentPage{Page: base, Draft: &draft, OrgName: "France Services", Labels: []string{"Logement"}, Done: "accepted", MandateID: "man_1"},
		"deconnecte":             &loggedOutPage{Page: base},
		"agir": &actPage{Page: base, Token: "tok", Service: "Service des impôts", Asked: store.List{"argent"},
			Choices: []provider.Choice{{MandateID: "man_1", GivenName: "Joséphine", FamilyName: "Lefèvre", Birthdate: "1948-03-12", Demarches: []string{"argent", "social"}}}},
		"service-quitte": &leftServicePage{Page: base, Service: "Service des impôts"},
		"services-documentation": &servicesDocPage{Page: base, Issuer: "https://aidants.example.fr", Discovery: "https://aidants.example.fr/.well-known/openid-configuration",
			Authorize: "https://aidants.example.fr/oidc/authorize", Token: "https://aidants.example.fr/oidc/token", UserInfo: "https://aidants.example.fr/oidc/userinfo",
			JWKS: "https://aidants.example.fr/oidc/jwks", Logout: "https://aidants.example.fr/oidc/logout", Scopes: []string{"openid"}, Claims: []string{"sub"},
			ACRs: []string{"eidas1", "eidas2"}, Prompts: []string{"none", "login"}, AuthMethods: []string{"private_key_jwt"}, SigningAlgs: []string{"ES256"},
			Demarches: mandate.Demarches, Low: "eidas1", Substantial: "eidas2"},
		"structure": &structurePage{Page: base, Org: &org.Organisation{ID: "org_1", Name: "France Services", SIRET: "98765432100015"},
			Aidants: []org.AidantRow{{Aidant: org.Aidant{ID: "aid_2", GivenName: "Dominique", FamilyName: "Bernard", Email: "d@example.org", HabilitatedUntil: "2027-01-01", Active: true},
				Membership: org.Membership{IsAidant: true, Active: true}}}, Demarches: []demarcheChoice{{Code: "argent", Label: "Argent", Checked: true}}, Today: "2026-03-12",
			Problem: "Indiquez le prénom.", Form: url.Values{"email": {"x@example.org"}}},
		"structure-journal": &structureJournalPage{Page: base, Lines: []journalLine{{Index: 4, When: now, Label: "Aidant désactivé", Aidant: "Dominique Bernard", Demarches: []string{"argent"}}},
			Labels: eventLabels, Types: []string{"aidant.disabled"}, Persons: []person{{"usa_1", "Joséphine Lefèvre"}}, Query: url.Values{"type": {"aidant.disabled"}}, Older: "/structure/journal?avant=4", CSV: "/structure/journal.csv?type=aidant.disabled"},
		"structures": &structuresPage{Page: base, Memberships: []org.Membership{{OrganisationID: "org_1", OrgName: "France Services", OrgSIRET: "98765432100015"}}},
		"mandat-retrait": &withdrawPage{Page: base, M: &view, Demarche: "logement", Reasons: mandate.RevokeReasons, Form: url.Values{"motif": {"autre"}},
			Problem: "Choisissez la raison."},
		"mon-espace-recu": &receiptPage{Page: spaceBase, Index: 3, When: now, Text: "Vous avez donné votre accord.", Leaf: 3, Size: 9, Witnessed: true,
			Checked: now, LeafHash: "AA==", QR: "data:image/png;base64,AA==", ProofURL: "https://x/audit/proof/inclusion?index=3&size=9"},
		"structure-desactivation": &disablePage{Page: base, Row: org.AidantRow{Aidant: org.Aidant{ID: "aid_2", GivenName: "Dominique", FamilyName: "Bernard"}},
			Reasons: org.DisableReasons, Form: url.Values{}},
		"mon-espace-objection": &objectionPage{Page: spaceBase, Index: 4, Action: "Camille Martin a ouvert « Service » pour vous.", When: now,
			Reasons: objection.Reasons, Reason: "autre", Text: "Je n'étais pas là", Problem: "Choisissez ce qui ne va pas.", Active: true},
		"mon-espace-objection-fin": &objectionPage{Page: spaceBase, Index: 4, Done: &objection.Objection{Withdrew: true}},
		"mandat-erreur": &errorDeclarationPage{Page: base, M: &view, Index: 5, Action: "Camille Martin a ouvert « Service »", ActionAt: now,
			Declarations: []*objection.Declaration{{ID: "err_1", What: "Mauvaise démarche", Fix: "Annulée", CreatedAt: store.T(now)}}, Problem: "Écrivez."},
		"structure-objections": &objectionsPage{Page: base, Rows: []objectionRow{{Objection: &objection.Objection{ID: "obj_1", CreatedAt: store.T(now)},
			Person: "Joséphine Lefèvre", Aidant: "Camille Martin", Action: "« Service »", ActionAt: now, Reason: "Je ne connais pas cette personne"}}},
		"structure-objection": &objectionAnswerPage{Page: base, Row: objectionRow{Objection: &objection.Objection{ID: "obj_1", MandateID: "man_1",
			CreatedAt: store.T(now), Text: "Je n'étais pas là"}, Person: "Joséphine Lefèvre", Aidant: "Camille Martin", Action: "« Service »", ActionAt: now,
			Reason: "Je ne connais pas cette personne"}, Problem: "Écrivez.", Done: true},
		"statistiques": newStatsPage(base, &stats.Report{OrganisationID: "org_1", From: now.AddDate(0, -11, 0), Now: now,
			Months:     []stats.Month{{Start: now, Created: 3, Active: 2, Revoked: 1}},
			ByDemarche: []stats.Count{{Key: "argent", Name: "Argent", N: 4}}, ByAidant: []stats.Count{{Key: "aid_1", Name: "Camille Martin", N: 4}},
			Remote: 1, OnSite: 2}, false, "France Services", "/structure/statistiques.csv"),
		"journal-public": &journalPage{Page: base, Checkpoint: "o\n1\nAA==\n", Size: 1, Key: "o+1+AA", Origin: "o"},
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
