package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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

	"github.com/go-jose/go-jose/v4"

	"aidants/devidp"
	"aidants/internal/seal"
	"aidants/mandate"
	"aidants/store"
)

var (
	draftPath   = regexp.MustCompile(`/brouillons/(drf_[a-z0-9]+)`)
	mandatePath = regexp.MustCompile(`/mandats/(man_[a-z0-9]+)`)
	consentURL  = regexp.MustCompile(`value="(http://[^"]+/consentement\?jeton=[^"]+)"`)
)

// openDB opens the development database of a running server, to read what
// the journeys stored.
func openDB(t *testing.T, s *testServer) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite", filepath.Join(s.Data, "aidants.db"), store.Options{NoCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func count(t *testing.T, db *store.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.R.Get(&n, db.Rebind(q), args...); err != nil {
		t.Fatal(err)
	}
	return n
}

// createOnSite walks the on-site creation as the signed-in aidant of c,
// with the person sub at FranceConnect, and returns the mandate's id.
func createOnSite(t *testing.T, c *http.Client, s *testServer, sub string, form url.Values) string {
	t.Helper()
	page, status, body := postForm(t, c, s.URL+"/mandats/nouveau", form)
	m := draftPath.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil {
		t.Fatalf("new mandate: %d at %s\n%s", status, page, body)
	}
	draft := m[1]
	page, status, body = pickIdentityAfterPost(t, c, s.URL+"/brouillons/"+draft+"/franceconnect", nil, sub)
	if status != http.StatusOK || !strings.Contains(body, "Récapitulatif du mandat") {
		t.Fatalf("after FranceConnect: %d at %s\n%s", status, page, body)
	}
	page, status, body = postForm(t, c, s.URL+"/brouillons/"+draft+"/signer", url.Values{"accord_personne": {"oui"}, "confirmation_aidant": {"oui"}})
	mm := mandatePath.FindStringSubmatch(page)
	if status != http.StatusOK || mm == nil || !strings.Contains(body, "Attestation de mandat") {
		t.Fatalf("sign: %d at %s\n%s", status, page, body)
	}
	return mm[1]
}

// pickIdentityAfterPost posts a form that leads to a development provider
// and picks the identity there.
func pickIdentityAfterPost(t *testing.T, c *http.Client, u string, form url.Values, sub string) (string, int, string) {
	t.Helper()
	page, status, body := postForm(t, c, u, form)
	req := hiddenRequest.FindStringSubmatch(body)
	act := formAction.FindStringSubmatch(body)
	if status != http.StatusOK || req == nil || act == nil {
		t.Fatalf("POST %s: %d at %s, no provider page:\n%s", u, status, page, body)
	}
	action, _ := url.Parse(page)
	action, _ = action.Parse(htmlUnescape(act[1]))
	return postForm(t, c, action.String(), url.Values{"request": {req[1]}, "identity": {sub}})
}

func onSiteForm(dem ...string) url.Values {
	return url.Values{"demarches": dem, "duree": {"6m"}, "methode": {"on_site"}}
}

func TestOnSiteMandateFromDraftToVerifiedSignature(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	id := createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent", "social"))

	_, _, page := get(t, c, s.URL+"/mandats/"+id)
	for _, want := range []string{"Joséphine Marie Lefèvre", "Argent - Impôts - Consommation", "Social - Santé", "En cours", "Camille Martin"} {
		if !strings.Contains(page, want) {
			t.Errorf("mandate page lacks %q", want)
		}
	}
	// The signed mandate, downloaded, verifies with go-jose against the
	// keys of the JWKS endpoint alone.
	resp, err := c.Get(s.URL + "/mandats/" + id + "/mandat.jwt")
	if err != nil {
		t.Fatal(err)
	}
	jws, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Content-Disposition"), "mandat-"+id+".jwt") {
		t.Fatalf("download headers: %v", resp.Header)
	}
	_, jwksBody := fetch(t, s.URL+"/oidc/jwks")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksBody, &set); err != nil {
		t.Fatal(err)
	}
	obj, err := jose.ParseSigned(string(jws), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(obj.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in the JWKS", obj.Signatures[0].Header.KeyID)
	}
	payload, err := obj.Verify(keys[0])
	if err != nil {
		t.Fatalf("does not verify with the published key: %v", err)
	}
	var claims mandate.Claims
	json.Unmarshal(payload, &claims)
	if claims.ID != id || claims.Usager.FamilyName != "Lefèvre" || claims.Org.SIRET != demoSIRET || len(claims.Demarches) != 2 ||
		obj.Signatures[0].Protected.ExtraHeaders[jose.HeaderType] != "mandate+jwt" {
		t.Fatalf("claims %+v", claims)
	}
	// The verification page (as the QR code opens it) and the command line.
	_, _, vp := get(t, browser(t), s.URL+"/mandats/verify?jws="+url.QueryEscape(string(jws)))
	if !strings.Contains(vp, "Ce mandat est valide") {
		t.Fatalf("verification page:\n%s", vp)
	}
	file := filepath.Join(t.TempDir(), "m.jwt")
	os.WriteFile(file, jws, 0o600)
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"mandate", "verify", file, "--dev", "--data", s.Data}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "valid:") {
		t.Fatalf("mandate verify: %v %s %s", err, out.String(), errb.String())
	}

	// From the stored evidence alone: the FranceConnect ID token verifies
	// with the stored key and carries base64url(SHA-256(draft_digest || salt)).
	db := openDB(t, s)
	var ev struct {
		Token string `db:"evidence_token"`
		JWK   string `db:"evidence_jwk"`
	}
	if err := db.R.Get(&ev, `SELECT evidence_token, evidence_jwk FROM mandates WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
	want, _ := mandate.ConsentNonce(claims.DraftDigest, claims.Salt)
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON([]byte(ev.JWK)); err != nil {
		t.Fatal(err)
	}
	tok, err := jose.ParseSigned(ev.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	fc, err := tok.Verify(key)
	if err != nil {
		t.Fatalf("evidence does not verify with the stored key: %v", err)
	}
	var idt struct {
		Nonce string `json:"nonce"`
		Iss   string `json:"iss"`
	}
	json.Unmarshal(fc, &idt)
	if idt.Nonce != want || !strings.HasSuffix(idt.Iss, "/dev/franceconnect") {
		t.Fatalf("evidence nonce %q, recomputed %q", idt.Nonce, want)
	}
	for _, typ := range []string{"mandate.draft_created", "usager.identified", "mandate.consent_given", "mandate.created"} {
		if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = ? AND (mandate_id = ? OR type IN ('mandate.draft_created', 'usager.identified'))`, typ, id); n != 1 {
			t.Errorf("%s: %d events, want 1", typ, n)
		}
	}
}

func TestBadMandateRequestsAreRefusedAndChangeNothing(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"org", "update", "--dev", "--data", s.Data, "--siret", demoSIRET, "--demarches", "argent,social,logement"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, s)
	events := count(t, db, `SELECT COUNT(*) FROM audit_events`)
	cases := []struct {
		name string
		form url.Values
		want string
	}{
		{"démarche outside the organisation's set", onSiteForm("argent", "justice"), "n'est pas autorisée pour votre structure"},
		{"unknown démarche", onSiteForm("cuisine"), "n'est pas autorisée pour votre structure"},
		{"tampered duration", url.Values{"demarches": {"argent"}, "duree": {"99a"}, "methode": {"on_site"}}, "Choisissez une durée"},
		{"no démarche", url.Values{"duree": {"1m"}, "methode": {"on_site"}}, "au moins une démarche"},
		{"tampered method", url.Values{"demarches": {"argent"}, "duree": {"1m"}, "methode": {"telepathy"}}, "présente ou donnera son accord"},
	}
	for _, tc := range cases {
		_, status, body := postForm(t, c, s.URL+"/mandats/nouveau", tc.form)
		if status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(body), tc.want) {
			t.Errorf("%s: %d, want 400 with %q", tc.name, status, tc.want)
		}
	}
	if n := count(t, db, `SELECT COUNT(*) FROM mandate_drafts`); n != 0 {
		t.Errorf("%d drafts stored by refused requests", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events`); n != events {
		t.Errorf("refused requests wrote %d events", n-events)
	}
	// Signing without both confirmations changes nothing either.
	page, _, _ := postForm(t, c, s.URL+"/mandats/nouveau", onSiteForm("argent"))
	draft := draftPath.FindStringSubmatch(page)[1]
	pickIdentityAfterPost(t, c, s.URL+"/brouillons/"+draft+"/franceconnect", nil, devidp.SubJosephine)
	_, status, body := postForm(t, c, s.URL+"/brouillons/"+draft+"/signer", url.Values{"accord_personne": {"oui"}})
	if status != http.StatusBadRequest || !strings.Contains(body, "Les deux confirmations sont nécessaires") {
		t.Fatalf("one confirmation: %d", status)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM mandates`); n != 0 {
		t.Fatalf("a mandate was created with one confirmation")
	}
}

func TestFranceConnectAnswerForAnotherDraftIsRefused(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	page, _, _ := postForm(t, c, s.URL+"/mandats/nouveau", onSiteForm("argent"))
	d1 := draftPath.FindStringSubmatch(page)[1]
	page, _, _ = postForm(t, c, s.URL+"/mandats/nouveau", onSiteForm("social"))
	d2 := draftPath.FindStringSubmatch(page)[1]
	// The person authenticates for draft 2 (nonce bound to d2) but the
	// answer is made to look like one for draft 1: the pending sign-in of
	// d2, sealed in the browser, is resealed to name d1 — which takes the
	// instance's session secret, as a forged or confused callback would.
	db := openDB(t, s)
	noRedirect := *c
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/brouillons/"+d2+"/franceconnect", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	secrets, err := loadDevSecrets(s.Data)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := base64.StdEncoding.DecodeString(secrets.SessionSecret)
	sealer, err := seal.New(secret, "pending sign-in", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(s.URL)
	var pending []*http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, "aidants-connexion-") {
			var v map[string]any
			if err := sealer.Open(ck.Name, ck.Value, &v); err != nil {
				t.Fatalf("open the pending sign-in: %v", err)
			}
			if v["d"] != d2 {
				t.Fatalf("the pending sign-in names %v, want the draft %s", v["d"], d2)
			}
			v["d"] = d1
			if ck.Value, err = sealer.Seal(ck.Name, v); err != nil {
				t.Fatal(err)
			}
			pending = append(pending, ck)
		}
	}
	if len(pending) != 1 {
		t.Fatalf("%d pending sign-ins in the browser, want 1", len(pending))
	}
	c.Jar.SetCookies(u, pending)
	_, status, body := pickIdentity(t, c, resp.Header.Get("Location"), devidp.SubJosephine)
	if status != http.StatusBadRequest || !strings.Contains(body, "ne correspond pas à ce projet de mandat") {
		t.Fatalf("foreign nonce: %d\n%s", status, body)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM mandate_drafts WHERE status <> 'pending'`); n != 0 {
		t.Fatalf("%d drafts moved on", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM usagers`); n != 0 {
		t.Fatalf("the person was recorded from a refused answer")
	}
}

// alexInOnlyTheSecondOrganisation makes Alex, a member of both demo
// organisations, work in the second one only.
func alexInOnlyTheSecondOrganisation(t *testing.T, s *testServer) {
	t.Helper()
	w, err := store.Open(context.Background(), "sqlite", filepath.Join(s.Data, "aidants.db"), store.Options{NoCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.W.Exec(`UPDATE memberships SET active = FALSE WHERE aidant_id = (SELECT id FROM aidants WHERE email = ?)
		AND organisation_id = (SELECT id FROM organisations WHERE siret = ?)`, devidp.EmailAlex, demoSIRET); err != nil {
		t.Fatal(err)
	}
}

func TestAnotherOrganisationGets404AndIsJournaled(t *testing.T) {
	s := startDev(t, "")
	a := browser(t)
	signInAidant(t, a, s, devidp.SubCamille)
	id := createOnSite(t, a, s, devidp.SubJosephine, onSiteForm("argent"))
	page, _, _ := postForm(t, a, s.URL+"/mandats/nouveau", onSiteForm("social"))
	draft := draftPath.FindStringSubmatch(page)[1]

	alexInOnlyTheSecondOrganisation(t, s)
	b := browser(t)
	if _, _, body := signInAidant(t, b, s, devidp.SubAlex); !strings.Contains(body, secondName) {
		t.Fatalf("Alex is not in the second organisation:\n%s", body)
	}
	db := openDB(t, s)
	denied := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`)
	for _, u := range []string{"/mandats/" + id, "/mandats/" + id + "/attestation", "/mandats/" + id + "/mandat.jwt", "/brouillons/" + draft} {
		if _, status, body := get(t, b, s.URL+u); status != http.StatusNotFound || strings.Contains(body, "Lefèvre") {
			t.Errorf("GET %s: %d", u, status)
		}
	}
	for _, u := range []string{"/mandats/" + id + "/revoquer", "/mandats/" + id + "/renouveler", "/brouillons/" + draft + "/signer", "/brouillons/" + draft + "/franceconnect"} {
		if _, status, _ := postForm(t, b, s.URL+u, url.Values{"motif": {"test"}, "duree": {"1m"}, "methode": {"on_site"},
			"accord_personne": {"oui"}, "confirmation_aidant": {"oui"}}); status != http.StatusNotFound {
			t.Errorf("POST %s: %d", u, status)
		}
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`) - denied; n != 8 {
		t.Errorf("%d access.denied events, want 8", n)
	}
	if _, _, body := get(t, b, s.URL+"/mandats"); strings.Contains(body, "Lefèvre") {
		t.Error("organisation B lists organisation A's mandate")
	}
	if _, _, body := get(t, a, s.URL+"/mandats/"+id); !strings.Contains(body, "En cours") {
		t.Error("the mandate changed")
	}
}

func TestRemoteConsentAcceptedOnceRefusedAndListed(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	remote := url.Values{"demarches": {"logement"}, "duree": {"1m"}, "methode": {"remote"}}
	_, status, body := postForm(t, c, s.URL+"/mandats/nouveau", remote)
	link := consentURL.FindStringSubmatch(body)
	if status != http.StatusOK || link == nil || !strings.Contains(body, `alt="Code QR`) {
		t.Fatalf("remote draft: %d\n%s", status, body)
	}
	consent := htmlUnescape(link[1])
	// The person, on their own device.
	person := browser(t)
	_, status, body = get(t, person, consent)
	if status != http.StatusOK || !strings.Contains(body, "Votre accord est demandé") || !strings.Contains(body, "Camille") {
		t.Fatalf("consent page: %d\n%s", status, body)
	}
	jeton := strings.TrimPrefix(consent[strings.Index(consent, "jeton="):], "jeton=")
	jeton, _ = url.QueryUnescape(jeton)
	_, status, body = pickIdentityAfterPost(t, person, s.URL+"/consentement/franceconnect", url.Values{"jeton": {jeton}}, devidp.SubAhmed)
	if status != http.StatusOK || !strings.Contains(body, "Ce que vous autorisez") || !strings.Contains(body, "Ahmed Benali") {
		t.Fatalf("recap for the person: %d\n%s", status, body)
	}
	_, status, body = postForm(t, person, s.URL+"/consentement/accepter", nil)
	m := regexp.MustCompile(`man_[a-z0-9]+`).FindString(body)
	if status != http.StatusOK || !strings.Contains(body, "Votre accord est enregistré") || m == "" {
		t.Fatalf("accept: %d\n%s", status, body)
	}
	// The aidant sees it accepted, and the mandate active.
	if _, _, list := get(t, c, s.URL+"/mandats"); !strings.Contains(list, "accepté") || !strings.Contains(list, "Benali") {
		t.Fatalf("the aidant's list:\n%s", list)
	}
	if _, _, page := get(t, c, s.URL+"/mandats/"+m); !strings.Contains(page, "accord donné à distance") || !strings.Contains(page, "En cours") {
		t.Fatalf("remote mandate page:\n%s", page)
	}
	// The link served once: opening it again, on any device, is refused.
	for _, who := range []*http.Client{person, browser(t)} {
		if _, status, body := get(t, who, consent); status != http.StatusBadRequest || !strings.Contains(body, "Ce lien a déjà servi") {
			t.Fatalf("reused link: %d\n%s", status, body)
		}
	}
	if _, status, _ := postForm(t, person, s.URL+"/consentement/accepter", url.Values{"jeton": {jeton}}); status != http.StatusBadRequest {
		t.Fatalf("accepting twice: %d", status)
	}

	// Another link, refused by another person.
	_, _, body = postForm(t, c, s.URL+"/mandats/nouveau", remote)
	consent2 := htmlUnescape(consentURL.FindStringSubmatch(body)[1])
	other := browser(t)
	get(t, other, consent2)
	jeton2, _ := url.QueryUnescape(consent2[strings.Index(consent2, "jeton=")+len("jeton="):])
	if _, status, body := postForm(t, other, s.URL+"/consentement/refuser", url.Values{"jeton": {jeton2}}); status != http.StatusOK || !strings.Contains(body, "Votre refus est enregistré") {
		t.Fatalf("refuse: %d\n%s", status, body)
	}
	if _, _, list := get(t, c, s.URL+"/mandats"); !strings.Contains(list, "refusé") {
		t.Fatal("the aidant's list does not show the refusal")
	}
	db := openDB(t, s)
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'mandate.consent_refused'`); n != 1 {
		t.Fatalf("%d consent_refused events", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM mandates`); n != 1 {
		t.Fatalf("%d mandates, want 1", n)
	}
}

func TestExpiredConsentLinkIsRefused(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	_, _, body := postForm(t, c, s.URL+"/mandats/nouveau", url.Values{"demarches": {"logement"}, "duree": {"1m"}, "methode": {"remote"}})
	consent := htmlUnescape(consentURL.FindStringSubmatch(body)[1])
	w, err := store.Open(context.Background(), "sqlite", filepath.Join(s.Data, "aidants.db"), store.Options{NoCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.W.Exec(`UPDATE mandate_drafts SET expires_at = 1000`); err != nil { // long past
		t.Fatal(err)
	}
	if _, status, body := get(t, browser(t), consent); status != http.StatusBadRequest || !strings.Contains(body, "a expiré") {
		t.Fatalf("expired link: %d\n%s", status, body)
	}
	if _, _, list := get(t, c, s.URL+"/mandats"); !strings.Contains(list, "expiré") {
		t.Fatal("the aidant's list does not show the expiry")
	}
}

func TestRevocationOfADemarcheThenOfTheMandate(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	id := createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent", "social"))
	_, _, jws := get(t, c, s.URL+"/mandats/"+id+"/mandat.jwt")
	// The mandate page links to a confirmation that says what happens and
	// asks why.
	_, _, page0 := get(t, c, s.URL+"/mandats/"+id)
	if !strings.Contains(page0, "/mandats/"+id+"/retirer?demarche=argent") || !strings.Contains(page0, "/mandats/"+id+"/retirer\"") {
		t.Fatalf("the mandate page does not lead to the confirmations:\n%s", page0)
	}
	_, status, confirm := get(t, c, s.URL+"/mandats/"+id+"/retirer?demarche=argent")
	if status != http.StatusOK || !strings.Contains(confirm, "Vous allez retirer la démarche") || !strings.Contains(confirm, `name="motif" value="demande_personne"`) {
		t.Fatalf("confirmation: %d\n%s", status, confirm)
	}
	for _, bad := range []url.Values{
		{"demarche": {"argent"}, "motif": {""}},
		{"demarche": {"argent"}, "motif": {"n'en a plus besoin"}},
		{"demarche": {"argent"}, "motif": {"autre"}, "precision": {"  "}},
	} {
		if _, status, body := postForm(t, c, s.URL+"/mandats/"+id+"/revoquer", bad); status != http.StatusBadRequest || !strings.Contains(body, "Choisissez la raison") {
			t.Fatalf("revocation with %v: %d", bad, status)
		}
	}
	page, status, body := postForm(t, c, s.URL+"/mandats/"+id+"/revoquer", url.Values{"demarche": {"argent"}, "motif": {"plus_necessaire"}})
	if status != http.StatusOK || !strings.Contains(body, "Retirée le") || !strings.Contains(body, "La personne n&#39;en a plus besoin") ||
		!strings.Contains(body, "est retirée de ce mandat") || !strings.Contains(page, "/mandats/"+id) {
		t.Fatalf("démarche revocation: %d at %s\n%s", status, page, body)
	}
	_, _, v := get(t, c, s.URL+"/mandats/verify?jws="+url.QueryEscape(jws))
	if !strings.Contains(v, "valide pour une partie") {
		t.Fatalf("after one démarche:\n%s", v)
	}
	page, status, body = postForm(t, c, s.URL+"/mandats/"+id+"/revoquer", url.Values{"motif": {"autre"}, "precision": {"La personne a déménagé"}})
	if status != http.StatusOK || !strings.Contains(page, "/attestation-revocation") || !strings.Contains(body, "Attestation de retrait") ||
		!strings.Contains(body, "Une autre raison") {
		t.Fatalf("revocation: %d at %s\n%s", status, page, body)
	}
	if _, _, body := get(t, c, s.URL+"/mandats/"+id); !strings.Contains(html.UnescapeString(body), "« La personne a déménagé »") {
		t.Fatalf("the mandate page does not give the reason's text:\n%s", body)
	}
	// The journal keeps the code and the text's hash, never the text.
	db := openDB(t, s)
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE body LIKE '%déménagé%'`); n != 0 {
		t.Fatalf("%d events carry the reason's text", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'mandate.revoked' AND body LIKE '%"reason":"autre"%' AND body LIKE '%text_sha256%'`); n != 1 {
		t.Fatalf("%d mandate.revoked events with the code and the text's hash, want 1", n)
	}
	_, _, v = get(t, c, s.URL+"/mandats/verify?jws="+url.QueryEscape(jws))
	if !strings.Contains(v, "Ce mandat a été retiré") {
		t.Fatalf("after revocation:\n%s", v)
	}
	file := filepath.Join(t.TempDir(), "m.jwt")
	os.WriteFile(file, []byte(jws), 0o600)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"mandate", "verify", "--dev", "--data", s.Data, file}, &out, &errb)
	if err == nil || !strings.HasPrefix(out.String(), "revoked:") {
		t.Fatalf("CLI after revocation: %v %q", err, out.String())
	}
	if _, _, list := get(t, c, s.URL+"/mandats?etat=revoques"); !strings.Contains(list, "Lefèvre") {
		t.Fatal("the revoked filter does not list it")
	}
}

func TestCreatingAMandateNeedsARecentAuthentication(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	// Make the sign-in an hour old.
	w, err := store.Open(context.Background(), "sqlite", filepath.Join(s.Data, "aidants.db"), store.Options{NoCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.W.Exec(`UPDATE sessions SET auth_time = auth_time - 3600000`); err != nil {
		t.Fatal(err)
	}
	// The form sends her to authenticate again, then back.
	page, status, body := get(t, c, s.URL+"/mandats/nouveau")
	if status != http.StatusOK || !strings.Contains(page, "/dev/aidants/authorize") || !strings.Contains(page, "prompt=login") {
		t.Fatalf("stale authentication: %d at %s", status, page)
	}
	req := hiddenRequest.FindStringSubmatch(body)
	act := formAction.FindStringSubmatch(body)
	action, _ := url.Parse(page)
	action, _ = action.Parse(htmlUnescape(act[1]))
	page, status, body = postForm(t, c, action.String(), url.Values{"request": {req[1]}, "identity": {devidp.SubCamille}})
	if status != http.StatusOK || !strings.HasSuffix(page, "/mandats/nouveau") || !strings.Contains(body, "Démarches autorisées") {
		t.Fatalf("after step-up: %d at %s", status, page)
	}
	db := openDB(t, s)
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'aidant.step_up'`); n != 1 {
		t.Fatalf("%d aidant.step_up events", n)
	}
	// A POST with a stale authentication creates nothing.
	w.W.Exec(`UPDATE sessions SET auth_time = auth_time - 3600000`)
	postForm(t, c, s.URL+"/mandats/nouveau", onSiteForm("argent"))
	if n := count(t, db, `SELECT COUNT(*) FROM mandate_drafts`); n != 0 {
		t.Fatalf("a draft was created with a stale authentication")
	}
}
