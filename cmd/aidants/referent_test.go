package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"aidants/devidp"
)

// aidantID reads an aidant's id by email.
func aidantID(t *testing.T, s *testServer, email string) string {
	t.Helper()
	var id string
	if err := openDB(t, s).R.Get(&id, `SELECT id FROM aidants WHERE email = ?`, email); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestReferentManagesTheTeamAndOnlyTheirs(t *testing.T) {
	s := startDev(t, "")
	ref := browser(t)
	signInAidant(t, ref, s, devidp.SubSacha)
	camille := browser(t)
	signInAidant(t, camille, s, devidp.SubCamille)

	// Not a référent: 403 on every référent page and action.
	for _, u := range []string{"/structure", "/structure/journal", "/structure/journal.csv"} {
		if _, status, body := get(t, camille, s.URL+u); status != http.StatusForbidden || !strings.Contains(body, "Réservé aux référents") {
			t.Errorf("Camille at %s: %d", u, status)
		}
	}
	sacha := aidantID(t, s, devidp.EmailSacha)
	if _, status, _ := postForm(t, camille, s.URL+"/structure/aidants/"+sacha+"/desactiver", nil); status != http.StatusForbidden {
		t.Errorf("Camille disabling Sacha: %d", status)
	}

	_, status, body := get(t, ref, s.URL+"/structure")
	text := html.UnescapeString(body)
	if status != http.StatusOK || !strings.Contains(text, "Camille Martin") || !strings.Contains(text, "Dominique Bernard") {
		t.Fatalf("the structure page: %d\n%s", status, text)
	}

	// Add an aidant by email: pending until first sign-in. A bad form
	// says why in French and adds nobody.
	page, status, body := postForm(t, ref, s.URL+"/structure/aidants", url.Values{"email": {"pas-une-adresse"}, "prenom": {"Zoé"},
		"nom": {"Lambert"}, "habilitation": {"2030-12-31"}, "aidant": {"oui"}})
	if status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(body), "L'adresse électronique n'est pas valide") {
		t.Errorf("a bad email: %d at %s", status, page)
	}
	// A name that a spreadsheet would run as a formula, to check the export.
	page, status, body = postForm(t, ref, s.URL+"/structure/aidants", url.Values{"email": {"zoe.lambert@france-services.example"},
		"prenom": {"=HYPERLINK(\"http://x\")"}, "nom": {"Lambert"}, "aidant": {"oui"}})
	if status != http.StatusOK || !strings.Contains(html.UnescapeString(body), "Lambert") || !strings.Contains(html.UnescapeString(body), "En attente d'habilitation") {
		t.Fatalf("adding Zoé: %d at %s", status, page)
	}
	// Habilitations are the operator's: Zoé cannot sign in before.
	var until string
	openDB(t, s).R.Get(&until, `SELECT habilitated_until FROM aidants WHERE email = 'zoe.lambert@france-services.example'`)
	if until >= time.Now().Format(time.DateOnly) {
		t.Errorf("a référent habilitated Zoé until %s", until)
	}
	// An existing aidant, of this or another organisation, is not added
	// (nor shown) from this page.
	for _, email := range []string{devidp.EmailDominique, devidp.EmailAlex} {
		_, status, body := postForm(t, ref, s.URL+"/structure/aidants", url.Values{"email": {email}, "prenom": {"X"}, "nom": {"Y"}, "aidant": {"oui"}})
		if status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(body), "demandez à l'opérateur") {
			t.Errorf("adding the existing %s: %d", email, status)
		}
	}
	if n := count(t, openDB(t, s), `SELECT COUNT(*) FROM aidants WHERE email LIKE 'pas-une%'`); n != 0 {
		t.Error("the bad form added an aidant")
	}

	// Disabling Camille ends her open session at her next request.
	// The référent confirms, with a reason.
	camilleID := aidantID(t, s, devidp.EmailCamille)
	if _, status, body := get(t, ref, s.URL+"/structure/aidants/"+camilleID+"/desactiver"); status != http.StatusOK ||
		!strings.Contains(body, "Désactiver Camille Martin") || !strings.Contains(body, `value="depart"`) {
		t.Fatalf("the confirmation: %d\n%s", status, body)
	}
	if _, status, body := postForm(t, ref, s.URL+"/structure/aidants/"+camilleID+"/desactiver", nil); status != http.StatusBadRequest ||
		!strings.Contains(body, "Choisissez la raison") {
		t.Fatalf("disabling without a reason: %d", status)
	}
	if _, status, body := postForm(t, ref, s.URL+"/structure/aidants/"+camilleID+"/desactiver", url.Values{"motif": {"autre"}, "precision": {"En congé maladie"}}); status != http.StatusOK ||
		!strings.Contains(html.UnescapeString(body), "L'aidant a été désactivé") {
		t.Fatalf("disabling Camille: %d", status)
	}
	if n := count(t, openDB(t, s), `SELECT COUNT(*) FROM audit_events WHERE type = 'aidant.disabled' AND body LIKE '%"reason":"autre"%' AND body LIKE '%text_sha256%' AND body NOT LIKE '%maladie%'`); n != 1 {
		t.Fatalf("%d aidant.disabled events with the code and the text's hash only, want 1", n)
	}
	if page, _, _ := get(t, camille, s.URL+"/tableau-de-bord"); !strings.Contains(page, "/connexion") {
		t.Errorf("Camille, disabled, still reaches %s", page)
	}
	// And she cannot sign in again in this organisation.
	if _, _, body := signInAidant(t, browser(t), s, devidp.SubCamille); strings.Contains(body, "Bonjour Camille") {
		t.Error("a disabled Camille signed in again")
	}

	// An aidant of another organisation: unknown here, and journaled.
	cli{t, []string{"--dev", "--data", s.Data}}.ok("aidant", "add", "--org", secondSIRET, "--email", "yanis@mediatheque.example",
		"--given-name", "Yanis", "--family-name", "Roux", "--habilitated-until", "2030-12-31")
	yanis := aidantID(t, s, "yanis@mediatheque.example")
	db := openDB(t, s)
	denied := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`)
	for _, action := range []string{"desactiver", "reactiver"} {
		if _, status, _ := postForm(t, ref, s.URL+"/structure/aidants/"+yanis+"/"+action, nil); status != http.StatusNotFound {
			t.Errorf("Sacha %s Yanis of another organisation: %d", action, status)
		}
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`); n != denied+2 {
		t.Errorf("%d access.denied after two attempts, want %d", n, denied+2)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM memberships WHERE aidant_id = ? AND active`, yanis); n != 1 {
		t.Error("Yanis's membership changed")
	}

	// Restricting the démarches: a mandate outside them is refused.
	if _, status, _ := postForm(t, ref, s.URL+"/structure/demarches", url.Values{"demarches": {"argent"}}); status != http.StatusOK {
		t.Fatalf("restricting démarches: %d", status)
	}
	dom := browser(t)
	signInAidant(t, dom, s, devidp.SubSacha)
	if page, status, _ := postForm(t, dom, s.URL+"/mandats/nouveau", onSiteForm("social")); status == http.StatusOK && draftPath.MatchString(page) {
		t.Error("a mandate for a démarche the organisation no longer offers was started")
	}
	if _, status, _ := postForm(t, ref, s.URL+"/structure/demarches", url.Values{"demarches": {"cuisine"}}); status != http.StatusBadRequest {
		t.Errorf("an unknown démarche: %d", status)
	}

	// The journal, filtered, and its CSV export (itself journaled).
	_, status, body = get(t, ref, s.URL+"/structure/journal?type=aidant.disabled")
	text = html.UnescapeString(body)
	if status != http.StatusOK || !strings.Contains(text, "Aidant désactivé") || !strings.Contains(text, `<td data-label="Aidant">Camille Martin</td>`) || strings.Count(text, "<tr><td") != 1 {
		t.Errorf("the filtered journal: %d\n%s", status, text)
	}
	if _, status, _ := get(t, ref, s.URL+"/structure/journal?type=inconnu"); status != http.StatusBadRequest {
		t.Errorf("an unknown event type: %d", status)
	}
	resp, err := ref.Get(s.URL + "/structure/journal.csv?type=aidant.disabled")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := frenchCSV(resp.Body)
	resp.Body.Close()
	if err != nil || len(rows) != 2 || rows[0][2] != "Événement" || rows[1][2] != "Aidant désactivé" || rows[1][7] != "aidant.disabled" || rows[1][3] != "Camille Martin" {
		t.Errorf("the CSV export: %v %v", rows, err)
	}
	resp, err = ref.Get(s.URL + "/structure/journal.csv?type=aidant.created")
	if err != nil {
		t.Fatal(err)
	}
	rows, _ = frenchCSV(resp.Body)
	resp.Body.Close()
	for _, row := range rows[1:] {
		if strings.HasPrefix(row[3], "=") {
			t.Errorf("a formula reaches the spreadsheet: %q", row[3])
		}
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'audit.exported'`); n != 2 {
		t.Errorf("%d audit.exported events", n)
	}
	// Nothing of the other organisation in the journal, even asked by id.
	for _, q := range []string{"", "?aidant=" + yanis} {
		_, _, body = get(t, ref, s.URL+"/structure/journal"+q)
		if strings.Contains(body, ">Yanis Roux</td>") || strings.Contains(body, ">"+yanis+"</td>") {
			t.Errorf("the journal%s shows another organisation's aidant", q)
		}
	}
}

func TestAidantOfSeveralOrganisationsSwitches(t *testing.T) {
	s := startDev(t, "")
	alex := browser(t)
	// After sign-in, Alex picks the organisation.
	page, _, body := signInAidant(t, alex, s, devidp.SubAlex)
	if !strings.Contains(page, "/structures") || !strings.Contains(body, "Pour quelle structure agissez-vous") {
		t.Fatalf("after sign-in Alex is at %s", page)
	}
	if _, _, dash := get(t, alex, s.URL+"/tableau-de-bord"); !strings.Contains(dash, `href="/structures"`) {
		t.Fatalf("no way to change organisation on the dashboard:\n%s", dash)
	}
	ids := regexp.MustCompile(`name="organisation" value="([^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(ids) != 2 {
		t.Fatalf("%d organisations offered, want 2", len(ids))
	}
	db := openDB(t, s)
	var second string
	db.R.Get(&second, `SELECT id FROM organisations WHERE siret = ?`, secondSIRET)
	_, status, body := postForm(t, alex, s.URL+"/structures", url.Values{"organisation": {second}})
	if status != http.StatusOK || !strings.Contains(html.UnescapeString(body), "<strong>"+secondName+"</strong>") {
		t.Fatalf("after switching: %d\n%s", status, body)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'aidant.organisation_switched' AND organisation_id = ?`, second); n != 1 {
		t.Errorf("%d aidant.organisation_switched events", n)
	}
	// Lists follow: a mandate made now belongs to the second organisation.
	id := createOnSite(t, alex, s, devidp.SubLucie, onSiteForm("argent"))
	if n := count(t, db, `SELECT COUNT(*) FROM mandates WHERE id = ? AND organisation_id = ?`, id, second); n != 1 {
		t.Error("the mandate is not the second organisation's")
	}
	// An organisation Alex is not in: refused, journaled, nothing changed.
	denied := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`)
	if _, status, _ := postForm(t, alex, s.URL+"/structures", url.Values{"organisation": {"org_inconnue"}}); status != http.StatusNotFound {
		t.Errorf("switching to an unknown organisation: %d", status)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`); n != denied+1 {
		t.Errorf("access.denied not journaled")
	}
	if _, _, body := get(t, alex, s.URL+"/tableau-de-bord"); !strings.Contains(html.UnescapeString(body), secondName) {
		t.Error("the refused switch changed the current organisation")
	}
}

// frenchCSV reads a CSV file made for French spreadsheets: a byte-order
// mark, then cells separated by ";".
func frenchCSV(r io.Reader) ([][]string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(b, []byte("\ufeff")) {
		return nil, errors.New("no byte-order mark: spreadsheets would not read the accents")
	}
	cr := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("\ufeff"))))
	cr.Comma = ';'
	return cr.ReadAll()
}
