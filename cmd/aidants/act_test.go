package main

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"aidants/devidp"
	"aidants/mandate"
)

var (
	demandeField = regexp.MustCompile(`name="demande" value="([^"]+)"`)
	mandatField  = regexp.MustCompile(`name="mandat" value="([^"]+)"`)
)

// TestDemoServiceShowsThePersonAndWhoActs walks the act-on-behalf journey
// through the demo public service, a real OpenID client of the provider.
func TestDemoServiceShowsThePersonAndWhoActs(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	id := createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent", "social"))

	page, status, body := get(t, c, s.URL+"/dev/service/agir")
	if status != http.StatusOK || !strings.Contains(page, "/agir?demande=") || !strings.Contains(body, "Joséphine Marie Lefèvre") {
		t.Fatalf("chooser: %d at %s\n%s", status, page, body)
	}
	// Two démarches fit: the aidant picks one.
	form := url.Values{"demande": {demandeField.FindStringSubmatch(body)[1]}, "mandat": {mandatField.FindStringSubmatch(body)[1]}, "demarche": {"argent"}}
	page, status, body = postForm(t, c, s.URL+"/agir", form)
	text := html.UnescapeString(body)
	if status != http.StatusOK || !strings.Contains(page, "/dev/service/retour") {
		t.Fatalf("demo service: %d at %s\n%s", status, page, text)
	}
	for _, want := range []string{"Joséphine Marie Lefèvre", "née le 12 mars 1948",
		"Démarche faite par Camille Martin (" + demoName + ", SIRET " + demoSIRET + "), au titre du mandat n° " + mandate.Ref(id),
		"Démarche autorisée : Argent - Impôts - Consommation", "niveau substantiel", id, "Argent-Impots-Consommation", "eidas2"} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo service's page lacks %q", want)
		}
	}
	db := openDB(t, s)
	for _, typ := range []string{"mandate.used", "token.issued"} {
		if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = ? AND mandate_id = ?`, typ, id); n != 1 {
			t.Errorf("%s: %d events", typ, n)
		}
	}
	// The person's space lists the action.
	person := browser(t)
	_, _, space := personSignIn(t, person, s, devidp.SubJosephine)
	if !strings.Contains(html.UnescapeString(space), "Camille Martin, de "+demoName+", a ouvert « Service démo (développement) » pour vous, pour la démarche « Argent - Impôts - Consommation »") {
		t.Fatalf("the person's space does not list the action:\n%s", space)
	}
}

func TestForgedChoiceIsRefusedAndJournaled(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent"))
	// Another organisation's mandate: Alex, in the second organisation only.
	alexInOnlyTheSecondOrganisation(t, s)
	b := browser(t)
	signInAidant(t, b, s, devidp.SubAlex)
	_, _, body := get(t, b, s.URL+"/dev/service/agir")
	if strings.Contains(body, "Lefèvre") {
		t.Fatal("the second organisation is offered the first one's person")
	}
	demande := demandeField.FindStringSubmatch(body)[1]
	db := openDB(t, s)
	var mandat string
	if err := db.R.Get(&mandat, `SELECT id FROM mandates`); err != nil {
		t.Fatal(err)
	}
	denied := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`)
	page, status, _ := postForm(t, b, s.URL+"/agir", url.Values{"demande": {demande}, "mandat": {mandat}, "demarche": {"argent"}})
	if status != http.StatusForbidden || strings.Contains(page, "/dev/service/retour") {
		t.Fatalf("forged choice: %d at %s", status, page)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`); n != denied+1 {
		t.Fatal("the forged choice was not journaled")
	}
	if n := count(t, db, `SELECT COUNT(*) FROM oidc_codes`); n != 0 {
		t.Fatal("a code was issued")
	}
	// A démarche the mandate does not cover, by the right organisation.
	_, _, body = get(t, c, s.URL+"/dev/service/agir")
	_, status, _ = postForm(t, c, s.URL+"/agir", url.Values{"demande": {demandeField.FindStringSubmatch(body)[1]}, "mandat": {mandat}, "demarche": {"justice"}})
	if status != http.StatusForbidden {
		t.Fatalf("uncovered démarche: %d", status)
	}
}

func TestBadRedirectURIsGetAPageNotARedirect(t *testing.T) {
	s := startDev(t, "")
	db := openDB(t, s)
	var client string
	if err := db.R.Get(&client, `SELECT value FROM instance_meta WHERE key = 'dev_service_id'`); err != nil {
		t.Fatal(err)
	}
	noFollow := browser(t)
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := url.Values{"client_id": {client}, "response_type": {"code"}, "scope": {"openid"}, "state": {"s"}, "nonce": {"n"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	for name, redirect := range map[string]string{
		"unregistered":    "https://evil.example/callback",
		"prefix-extended": s.URL + "/dev/service/retour/../../evil",
		"with a query":    s.URL + "/dev/service/retour?x=1",
	} {
		q := url.Values{}
		for k, v := range base {
			q[k] = v
		}
		q.Set("redirect_uri", redirect)
		resp, err := noFollow.Get(s.URL + "/oidc/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s redirect_uri: %d, Location %q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// A good redirect URI with a mistake goes back to the service, with iss.
	q := url.Values{}
	for k, v := range base {
		q[k] = v
	}
	q.Set("redirect_uri", s.URL+"/dev/service/retour")
	q.Set("code_challenge_method", "plain")
	resp, err := noFollow.Get(s.URL + "/oidc/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "s" || loc.Query().Get("iss") != s.URL {
		t.Fatalf("plain PKCE: %d %s", resp.StatusCode, loc)
	}
}
