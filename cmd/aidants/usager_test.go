package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"aidants/devidp"
	"aidants/mandate"
)

var receiptLink = regexp.MustCompile(`/mon-espace/actions/(\d+)`)

// personSignIn opens the person's space through the development
// FranceConnect and returns the space's page.
func personSignIn(t *testing.T, c *http.Client, s *testServer, sub string) (string, int, string) {
	t.Helper()
	return pickIdentityAfterPost(t, c, s.URL+"/mon-espace/connexion", nil, sub)
}

func download(t *testing.T, c *http.Client, u string) (int, []byte, http.Header) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

var witnessedTrue, witnessedFalse = regexp.MustCompile(`"witnessed":\s*true`), regexp.MustCompile(`"witnessed":\s*false`)

// witnessedReceipt downloads a receipt again until its checkpoint is
// cosigned (development mode witnesses every half second).
func witnessedReceipt(t *testing.T, c *http.Client, u string) []byte {
	t.Helper()
	for range 100 {
		st, receipt, _ := download(t, c, u)
		if st == 200 && witnessedTrue.MatchString(string(receipt)) {
			return receipt
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s is still not witnessed after 10 s", u)
	return nil
}

func TestPersonSeesMandatesAndActionsGetsReceiptsExportsAndRevokes(t *testing.T) {
	s := startDev(t, "")
	aidant := browser(t)
	signInAidant(t, aidant, s, devidp.SubCamille)
	id := createOnSite(t, aidant, s, devidp.SubJosephine, onSiteForm("argent", "logement"))

	person := browser(t)
	if _, _, body := get(t, person, s.URL+"/mon-espace"); !strings.Contains(body, "Se connecter avec FranceConnect") {
		t.Fatalf("space without a session:\n%s", body)
	}
	_, status, body := personSignIn(t, person, s, devidp.SubJosephine)
	text := html.UnescapeString(body)
	for _, want := range []string{"Bonjour Joséphine Marie", demoName, "Argent - Impôts - Consommation", "Logement", "Préparé par Camille Martin",
		"Vous avez donné votre accord à " + demoName, "Vous avez confirmé votre identité avec FranceConnect", "Mandat n° " + mandate.Ref(id)} {
		if !strings.Contains(text, want) {
			t.Errorf("the space lacks %q", want)
		}
	}
	if status != http.StatusOK {
		t.Fatalf("space: %d", status)
	}
	// A receipt, checked offline by the command line with the instance's
	// key, and by a third party with the key published at /audit/key.
	m := receiptLink.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no receipt link")
	}
	// The history links to a page in plain French, with the QR code of
	// the public proof and the receipt to download.
	_, st, proofPage := get(t, person, s.URL+"/mon-espace/actions/"+m[1])
	for _, want := range []string{"Cette action est inscrite au journal public sous le n° <strong>" + m[1] + "</strong>",
		"Télécharger le reçu (pour un vérificateur)", `href="/mon-espace/recus/` + m[1] + `"`, `src="data:image/png;base64,`} {
		if st != http.StatusOK || !strings.Contains(proofPage, want) {
			t.Fatalf("the receipt page (%d) lacks %q:\n%s", st, want, proofPage)
		}
	}
	st, receipt, hdr := download(t, person, s.URL+"/mon-espace/recus/"+m[1])
	if st != 200 || !strings.Contains(hdr.Get("Content-Disposition"), "recu-"+m[1]) {
		t.Fatalf("receipt: %d %v", st, hdr)
	}
	file := filepath.Join(t.TempDir(), "recu.json")
	var out, errb bytes.Buffer
	if witnessedFalse.MatchString(string(receipt)) {
		// Newer than the last witnessed checkpoint: it says so, and
		// verify-receipt, which asks for the witnesses, says to come back.
		os.WriteFile(file, receipt, 0o600)
		err := run(context.Background(), []string{"audit", "verify-receipt", file, "--dev", "--data", s.Data}, &out, &errb)
		if err == nil || !strings.HasPrefix(out.String(), "not yet witnessed:") || !strings.Contains(out.String(), "download the receipt again later") {
			t.Fatalf("a receipt not yet witnessed: %v %s", err, out.String())
		}
		receipt = witnessedReceipt(t, person, s.URL+"/mon-espace/recus/"+m[1])
	}
	os.WriteFile(file, receipt, 0o600)
	out.Reset()
	if err := run(context.Background(), []string{"audit", "verify-receipt", file, "--dev", "--data", s.Data}, &out, &errb); err != nil ||
		!strings.HasPrefix(out.String(), "valid:") || !strings.Contains(out.String(), "cosigned by témoin de développement (dev.aidants.localhost/witness)") {
		t.Fatalf("verify-receipt: %v %s", err, out.String())
	}
	_, key := fetch(t, s.URL+"/audit/key")
	out.Reset()
	if err := run(context.Background(), []string{"audit", "verify-receipt", "--key", strings.TrimSpace(string(key)), file}, &out, &errb); err != nil {
		t.Fatalf("verify-receipt --key: %v %s", err, out.String())
	}

	// Exports: JSON with everything, CSV of the actions; both journaled.
	st, js, _ := download(t, person, s.URL+"/mon-espace/donnees.json")
	var export struct {
		Personne struct {
			Nom string `json:"nom"`
		} `json:"personne"`
		Mandats []struct {
			Numero string `json:"numero"`
		} `json:"mandats"`
		Evenements []struct {
			Index  int64  `json:"index"`
			Texte  string `json:"texte"`
			Brut   string `json:"evenement_brut"`
			Sel    []byte `json:"sel"`
			Entree []byte `json:"entree"`
		} `json:"evenements"`
	}
	if err := json.Unmarshal(js, &export); err != nil || st != 200 || export.Personne.Nom != "Lefèvre" || len(export.Mandats) != 1 || len(export.Evenements) < 4 {
		t.Fatalf("JSON export: %d %v %s", st, err, js)
	}
	// Each event of the export is found, by its entry, in the public tiles.
	size, _, _ := thirdPartyCheckpoint(t, s.URL)
	_, bundle := fetch(t, fmt.Sprintf("%s/audit/tile/entries/000.p/%d", s.URL, size))
	for _, e := range export.Evenements {
		entry := sha256.Sum256(append(append([]byte{}, e.Sel...), e.Brut...))
		if len(e.Sel) != 32 || !bytes.Equal(entry[:], e.Entree) {
			t.Fatalf("event %d: entree is not SHA-256(sel ‖ evenement_brut)", e.Index)
		}
		if at := int(e.Index) * 34; at+34 > len(bundle) || !bytes.Equal(bundle[at+2:at+34], entry[:]) {
			t.Fatalf("event %d: its entry is not in the public entry bundle", e.Index)
		}
	}
	st, csvBody, _ := download(t, person, s.URL+"/mon-espace/actions.csv")
	rows, err := frenchCSV(bytes.NewReader(csvBody))
	if st != 200 || err != nil || len(rows) < 2 || rows[0][0] != "N° au journal" || rows[0][2] != "Ce qui a été fait" ||
		!strings.Contains(string(csvBody), "mandate.created") || !strings.Contains(string(csvBody), "est signé. Il a été préparé par Camille Martin") ||
		strings.Contains(string(csvBody), id) {
		t.Fatalf("CSV export: %d %v\n%s", st, err, csvBody)
	}

	// Withdrawing one démarche, after a confirmation page.
	_, status, body = get(t, person, s.URL+"/mon-espace/mandats/"+id+"/revoquer?demarche=argent")
	if status != 200 || !strings.Contains(body, "Oui, je retire mon accord") {
		t.Fatalf("confirmation: %d", status)
	}
	page, status, body := postForm(t, person, s.URL+"/mon-espace/mandats/"+id+"/revoquer", url.Values{"demarche": {"argent"}})
	if status != 200 || !strings.Contains(page, "revoque=1") || !strings.Contains(html.UnescapeString(body), "Vous avez retiré la démarche « Argent") {
		t.Fatalf("withdrawal: %d at %s", status, page)
	}
	if _, _, view := get(t, aidant, s.URL+"/mandats/"+id); !strings.Contains(view, "Retirée le") {
		t.Fatal("the aidant's view does not show the withdrawal")
	}
	db := openDB(t, s)
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'mandate.demarche_revoked' AND body LIKE '%"kind":"usager"%'`); n != 1 {
		t.Fatalf("%d withdrawals by the person in the journal", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'audit.exported'`); n != 2 {
		t.Fatalf("%d audit.exported events, want 2", n)
	}
	// Logout, here and at FranceConnect; the old cookie opens nothing.
	u, _ := url.Parse(s.URL)
	old := person.Jar.Cookies(u)
	page, _, _ = postForm(t, person, s.URL+"/mon-espace/deconnexion", nil)
	if !strings.Contains(page, "/mon-espace/deconnecte") {
		t.Fatalf("logout ends at %s", page)
	}
	replay := browser(t)
	replay.Jar.SetCookies(u, old)
	if _, _, body := get(t, replay, s.URL+"/mon-espace"); !strings.Contains(body, "Se connecter avec FranceConnect") {
		t.Fatal("the old cookie still opens the space")
	}
}

func TestPersonCannotReachAnotherPersonsData(t *testing.T) {
	s := startDev(t, "")
	aidant := browser(t)
	signInAidant(t, aidant, s, devidp.SubCamille)
	createOnSite(t, aidant, s, devidp.SubJosephine, onSiteForm("argent"))
	ahmed := createOnSite(t, aidant, s, devidp.SubAhmed, onSiteForm("social"))

	// Ahmed's events, by index.
	other := browser(t)
	_, _, body := personSignIn(t, other, s, devidp.SubAhmed)
	var his []string
	for _, m := range receiptLink.FindAllStringSubmatch(body, -1) {
		his = append(his, m[1])
	}
	if len(his) == 0 {
		t.Fatal("Ahmed has no events")
	}

	person := browser(t)
	_, _, body = personSignIn(t, person, s, devidp.SubJosephine)
	if strings.Contains(body, "Benali") || strings.Contains(body, mandate.Ref(ahmed)) {
		t.Fatal("Joséphine's space shows Ahmed")
	}
	db := openDB(t, s)
	denied := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`)
	for _, idx := range his {
		if st, b, _ := download(t, person, s.URL+"/mon-espace/recus/"+idx); st != http.StatusNotFound || strings.Contains(string(b), "Benali") {
			t.Errorf("someone else's receipt %s: %d", idx, st)
		}
		if _, st, b := get(t, person, s.URL+"/mon-espace/actions/"+idx); st != http.StatusNotFound || strings.Contains(b, "Benali") {
			t.Errorf("someone else's receipt page %s: %d", idx, st)
		}
	}
	if _, st, _ := get(t, person, s.URL+"/mon-espace/mandats/"+ahmed+"/revoquer"); st != http.StatusNotFound {
		t.Errorf("someone else's revocation page: %d", st)
	}
	if _, st, _ := postForm(t, person, s.URL+"/mon-espace/mandats/"+ahmed+"/revoquer", nil); st != http.StatusNotFound {
		t.Errorf("someone else's revocation: %d", st)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`) - denied; n != 2*len(his)+2 {
		t.Errorf("%d access.denied events, want %d", n, 2*len(his)+2)
	}
	if _, _, v := get(t, aidant, s.URL+"/mandats/"+ahmed); !strings.Contains(v, "En cours") {
		t.Error("Ahmed's mandate changed")
	}
	// Paging parameters and exports only ever show her own.
	for _, u := range []string{"/mon-espace?avant=99999999", "/mon-espace/donnees.json", "/mon-espace/actions.csv"} {
		if _, b, _ := download(t, person, s.URL+u); strings.Contains(string(b), "Benali") || strings.Contains(string(b), ahmed) {
			t.Errorf("%s shows Ahmed's data", u)
		}
	}
	if _, st, _ := get(t, person, s.URL+"/mon-espace?avant=abc"); st != http.StatusBadRequest {
		t.Errorf("a bad page number: %d", st)
	}
}

func TestUnknownPersonIsToldAndNothingIsStored(t *testing.T) {
	s := startDev(t, "")
	_, status, body := personSignIn(t, browser(t), s, devidp.SubLucie)
	if status != http.StatusOK || !strings.Contains(body, "Aucun mandat à votre nom") {
		t.Fatalf("unknown person: %d\n%s", status, body)
	}
	db := openDB(t, s)
	if n := count(t, db, `SELECT COUNT(*) FROM usagers`); n != 0 {
		t.Fatalf("%d persons stored", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM sessions WHERE kind = 'usager'`); n != 0 {
		t.Fatalf("%d person sessions opened", n)
	}
}

func TestTamperedReceiptsAreRejectedByTheCommandLine(t *testing.T) {
	s := startDev(t, "")
	aidant := browser(t)
	signInAidant(t, aidant, s, devidp.SubCamille)
	createOnSite(t, aidant, s, devidp.SubJosephine, onSiteForm("argent"))
	person := browser(t)
	_, _, body := personSignIn(t, person, s, devidp.SubJosephine)
	m := receiptLink.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no receipt link:\n%s", body)
	}
	_, receipt, _ := download(t, person, s.URL+"/mon-espace/recus/"+m[1])
	var r map[string]any
	json.Unmarshal(receipt, &r)
	tamper := func(f func(map[string]any)) []byte {
		var c map[string]any
		json.Unmarshal(receipt, &c)
		f(c)
		b, _ := json.Marshal(c)
		return b
	}
	cases := map[string][]byte{
		"the event was modified": tamper(func(c map[string]any) {
			c["event"] = strings.Replace(c["event"].(string), `"type":"`, `"type":"x`, 1)
		}),
		"inclusion proof": tamper(func(c map[string]any) {
			p := c["proof"].([]any)
			p[len(p)-1] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
		}),
		"another key": tamper(func(c map[string]any) { c["key"] = "evil.invalid/audit+00000000+AQ==" }),
	}
	for want, data := range cases {
		file := filepath.Join(t.TempDir(), "r.json")
		os.WriteFile(file, data, 0o600)
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{"audit", "verify-receipt", file, "--dev", "--data", s.Data}, &out, &errb)
		if err == nil || !strings.HasPrefix(out.String(), "invalid:") || !strings.Contains(out.String(), want) {
			t.Errorf("%s: %v %q", want, err, out.String())
		}
	}
}
