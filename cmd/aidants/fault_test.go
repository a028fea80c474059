package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/auditor"
	"aidants/devidp"
	"aidants/internal/dbfault"
	"aidants/provider"
	"aidants/store"
	"aidants/store/storetest"
)

// startBreakable serves the development instance as `aidants serve --dev`
// does — every service wired by wire(), the development providers, the
// demo service — but on a database of dialect d that fails on demand.
func startBreakable(t *testing.T, d store.Dialect) (*testServer, *instance, *dbfault.DB) {
	t.Helper()
	db := dbfault.Open(t, d)
	s, in := startOn(t, db.DB)
	return s, in, db
}

// startOn serves the development instance on an open, migrated database
// the test keeps a hand on.
func startOn(t *testing.T, db *store.DB) (*testServer, *instance) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := devConfig(dir, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := newLogger(cfg, logs)
	// What open() does, on this database.
	in, err := assemble(ctx, cfg, db, logger)
	if err != nil {
		t.Fatal(err)
	}
	l := in.log
	handler, _, err := wire(ctx, in, &envFlags{dev: true, data: dir})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		l.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return &testServer{URL: cfg.Server.PublicURL, Data: dir, Log: logs}, in
}

// outage is a request made while the database fails: it must get the
// server's error page or answer, and the journal must not grow.
type outage struct {
	t  *testing.T
	db *dbfault.DB
}

// during runs do while pools fail on statements containing text, and
// checks that the journal gained nothing.
func (o outage) during(name string, pools dbfault.Pools, text string, do func()) {
	o.t.Helper()
	before := o.db.Events(o.t)
	o.db.Fail(pools, text)
	do()
	o.db.Heal()
	if n := o.db.Events(o.t); n != before {
		o.t.Errorf("%s: the journal gained %v while the database failed", name, o.db.EventTypes(o.t, before))
	}
}

// wantServerError checks a page answered during an outage: the server's
// error (500, the fixed message), not a refusal.
func wantServerError(t *testing.T, name string, status int, body string) {
	t.Helper()
	if status != http.StatusInternalServerError || !strings.Contains(html.UnescapeString(body), "Une erreur est survenue") {
		t.Errorf("%s: %d, want the 500 page\n%.400s", name, status, body)
	}
}

// TestDatabaseFailureIsAnErrorNeverARefusalNorAnEvent breaks the database
// in the middle of every kind of request that can refuse — a choice of
// person at the provider, an object of the aidant or of the person, a
// consent link, an export, the auditors' API and its scope filters, an
// aidant's sign-in — and checks that the caller gets a server error (never
// 400, 401, 403 or 404) and that the journal says nothing happened; then
// that the genuine refusals still are refusals, journaled.
func TestDatabaseFailureIsAnErrorNeverARefusalNorAnEvent(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) { databaseFailures(t, d) })
	}
}

func databaseFailures(t *testing.T, d store.Dialect) {
	s, in, db := startBreakable(t, d)
	ctx := context.Background()
	o := outage{t, db}
	aidant := browser(t)
	signInAidant(t, aidant, s, devidp.SubCamille)
	id := createOnSite(t, aidant, s, devidp.SubJosephine, onSiteForm("argent"))
	var usager string
	if err := db.Clean.R.Get(&usager, db.Clean.Rebind(`SELECT usager_id FROM mandates WHERE id = ?`), id); err != nil {
		t.Fatal(err)
	}

	// The aidant's objects: a lookup that fails is not "another
	// organisation's" (404 and access.denied).
	o.during("mandate page", dbfault.Readers, "FROM mandates m JOIN", func() {
		_, status, body := get(t, aidant, s.URL+"/mandats/"+id)
		wantServerError(t, "mandate page", status, body)
	})
	o.during("revocation", dbfault.Writer, "FROM mandates WHERE id", func() {
		_, status, body := postForm(t, aidant, s.URL+"/mandats/"+id+"/revoquer", url.Values{"demarche": {"argent"}, "motif": {"erreur"}})
		wantServerError(t, "revocation", status, body)
	})
	_, _, body := postForm(t, aidant, s.URL+"/mandats/nouveau", url.Values{"demarches": {"argent"}, "duree": {"1m"}, "methode": {"remote"}})
	link := consentURL.FindStringSubmatch(body)
	if link == nil {
		t.Fatalf("no consent link:\n%s", body)
	}
	o.during("draft page", dbfault.Readers, "FROM mandate_drafts WHERE id", func() {
		var draft string
		db.Clean.R.Get(&draft, `SELECT id FROM mandate_drafts WHERE method = 'remote'`)
		_, status, body := get(t, aidant, s.URL+"/brouillons/"+draft)
		wantServerError(t, "draft page", status, body)
	})
	o.during("consent link", dbfault.Readers, "FROM mandate_drafts WHERE link_hash", func() {
		_, status, body := get(t, browser(t), html.UnescapeString(link[1]))
		wantServerError(t, "consent link", status, body)
	})

	// Acting on behalf: the choice of a person at the provider.
	_, _, body = get(t, aidant, s.URL+"/dev/service/agir")
	demande := demandeField.FindStringSubmatch(body)
	if demande == nil {
		t.Fatalf("no chooser:\n%s", body)
	}
	choice := url.Values{"demande": {demande[1]}, "mandat": {id}, "demarche": {"argent"}}
	o.during("chooser", dbfault.Readers, "FROM spent_requests", func() {
		_, status, body := get(t, aidant, s.URL+"/agir?demande="+url.QueryEscape(demande[1]))
		wantServerError(t, "chooser", status, body)
	})
	for _, c := range []struct {
		pools dbfault.Pools
		text  string
	}{{dbfault.Readers, "FROM spent_requests"}, {dbfault.Writer, "FROM mandates WHERE id"}, {dbfault.Writer, "INSERT INTO spent_requests"}} {
		o.during("choice, failing on "+c.text, c.pools, c.text, func() {
			_, status, body := postForm(t, aidant, s.URL+"/agir", choice)
			wantServerError(t, "choice, failing on "+c.text, status, body)
		})
	}
	o.during("cancel", dbfault.Readers, "FROM spent_requests", func() {
		_, status, body := postForm(t, aidant, s.URL+"/agir/annuler", url.Values{"demande": {demande[1]}})
		wantServerError(t, "cancel", status, body)
	})
	// The request survived the outage: the same choice now succeeds.
	before := db.Events(t)
	if page, status, _ := postForm(t, aidant, s.URL+"/agir", choice); status != http.StatusOK || !strings.Contains(page, "/dev/service/retour") {
		t.Fatalf("choice after the outage: %d at %s", status, page)
	}
	if got := db.EventTypes(t, before); !slices.Equal(got, []string{audit.MandateUsed, audit.TokenIssued}) {
		t.Errorf("the choice after the outage journaled %v", got)
	}
	// An authorization request of a service not read since it registered.
	svc, _, err := in.provider.AddService(ctx, operator, provider.NewService{Name: "Impôts", RedirectURIs: []string{"https://impots.test.invalid/cb"},
		Demarches: []string{"argent"}, AuthMethod: provider.ClientSecretBasic})
	if err != nil {
		t.Fatal(err)
	}
	o.during("authorize", dbfault.Readers, "FROM services", func() {
		q := url.Values{"client_id": {svc.ID}, "redirect_uri": {"https://impots.test.invalid/cb"}, "response_type": {"code"}, "scope": {"openid"},
			"state": {"s"}, "nonce": {"n"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		_, status, body := get(t, aidant, s.URL+"/oidc/authorize?"+q.Encode())
		wantServerError(t, "authorize", status, body)
	})

	// The person's objects and downloads.
	person := browser(t)
	personSignIn(t, person, s, devidp.SubJosephine)
	var index int64
	db.Clean.R.Get(&index, db.Clean.Rebind(`SELECT MIN(idx) FROM audit_events WHERE usager_id = ?`), usager)
	for _, c := range []struct{ name, path, text string }{
		{"revocation page", "/mon-espace/mandats/" + id + "/revoquer", "FROM mandates m JOIN"},
		{"receipt", fmt.Sprintf("/mon-espace/recus/%d", index), "FROM audit_events WHERE idx"},
		{"CSV export", "/mon-espace/actions.csv", "FROM audit_events WHERE usager_id"},
		{"JSON export", "/mon-espace/donnees.json", "FROM audit_events WHERE usager_id"},
		{"space", "/mon-espace", "FROM aidants WHERE id"},
	} {
		o.during(c.name, dbfault.Readers, c.text, func() {
			_, status, body := get(t, person, s.URL+c.path)
			wantServerError(t, c.name, status, body)
		})
	}
	o.during("person's revocation", dbfault.Readers, "FROM mandates m JOIN", func() {
		_, status, body := postForm(t, person, s.URL+"/mon-espace/mandats/"+id+"/revoquer", url.Values{"demarche": {"argent"}})
		wantServerError(t, "person's revocation", status, body)
	})

	// The référent's export of the organisation's journal.
	referent := browser(t)
	signInAidant(t, referent, s, devidp.SubSacha)
	o.during("journal export", dbfault.Readers, "FROM audit_events WHERE idx", func() {
		_, status, body := get(t, referent, s.URL+"/structure/journal.csv")
		wantServerError(t, "journal export", status, body)
	})

	databaseFailuresOfTheAuditorsAPI(t, s, in, o)
	databaseFailuresOfTheSignIn(t, s, o)
}

// databaseFailuresOfTheAuditorsAPI breaks the database under the token
// grant, the bearer check, the scope filters and the query of an auditor
// limited to one organisation.
func databaseFailuresOfTheAuditorsAPI(t *testing.T, s *testServer, in *instance, o outage) {
	ctx := context.Background()
	db := o.db
	orgA, err := in.dir.OrganisationBySIRET(ctx, demoSIRET)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "a1", Algorithm: "ES256", Use: "sig"}}})
	reg, err := in.auditors.Add(ctx, operator, auditor.NewAuditor{Name: "Inspection", JWKS: string(pub), Organisations: []string{orgA.ID}})
	if err != nil {
		t.Fatal(err)
	}
	a := testAuditor{id: reg.ID, key: priv}
	o.during("auditor token", dbfault.Readers, "FROM auditors", func() {
		status, body := tokenRequest(t, s, a.assertion(t, s, nil, nil), nil)
		if status != http.StatusInternalServerError || body["error"] != "server_error" {
			t.Errorf("auditor token, readers failing: %d %v, want 500 server_error", status, body)
		}
	})
	tok := a.token(t, s)
	var aidantA, usager string
	db.Clean.R.Get(&aidantA, db.Clean.Rebind(`SELECT aidant_id FROM memberships WHERE organisation_id = ? ORDER BY aidant_id LIMIT 1`), orgA.ID)
	db.Clean.R.Get(&usager, db.Clean.Rebind(`SELECT usager_id FROM mandates WHERE organisation_id = ? LIMIT 1`), orgA.ID)
	for _, c := range []struct{ name, query, text, accept string }{
		{"bearer", "", "FROM auditors", ""},
		{"organisation filter by SIRET", "organisation=" + demoSIRET, "FROM organisations WHERE siret", ""},
		{"aidant filter", "aidant=" + aidantA, "FROM memberships WHERE aidant_id", ""},
		{"person filter", "usager=" + usager, "FROM mandates WHERE usager_id", ""},
		{"query", "limit=10", "FROM audit_events WHERE idx", ""},
		{"export", "", "FROM audit_events WHERE idx", "application/x-ndjson"},
		{"CSV export", "", "FROM audit_events WHERE idx", "text/csv"},
	} {
		o.during("auditor "+c.name, dbfault.Readers, c.text, func() {
			r := queryEvents(t, s, tok, c.query, c.accept)
			if r.status != http.StatusInternalServerError || !strings.Contains(r.body, `"server_error"`) {
				t.Errorf("auditor %s, readers failing: %d %s, want 500 server_error", c.name, r.status, r.body)
			}
		})
	}
	// The genuine refusal is still one, journaled; a genuine query too.
	before := db.Events(t)
	if r := queryEvents(t, s, tok, "organisation="+secondSIRET, ""); r.status != http.StatusForbidden {
		t.Errorf("out of scope: %d %s", r.status, r.body)
	}
	if r := queryEvents(t, s, tok, "organisation="+demoSIRET, ""); r.status != http.StatusOK {
		t.Errorf("in scope: %d %s", r.status, r.body)
	}
	if got := db.EventTypes(t, before); !slices.Equal(got, []string{audit.AccessDenied, audit.AuditQueried}) {
		t.Errorf("the refusal and the query journaled %v", got)
	}
}

// databaseFailuresOfTheSignIn breaks the database between an aidant's
// choice at the identity provider and the callback: the answer is not
// "no longer valid" nor "access refused", and no aidant.login_refused is
// written for an aidant the directory could not read.
func databaseFailuresOfTheSignIn(t *testing.T, s *testServer, o outage) {
	for _, text := range []string{"INSERT INTO spent_requests", "FROM aidants WHERE issuer", "FROM memberships m JOIN"} {
		b := browser(t)
		page, status, body := get(t, b, s.URL+"/connexion/aidant")
		req, act := hiddenRequest.FindStringSubmatch(body), formAction.FindStringSubmatch(body)
		if status != http.StatusOK || req == nil || act == nil {
			t.Fatalf("no identity form at %s:\n%s", page, body)
		}
		action, _ := url.Parse(page)
		action, _ = action.Parse(htmlUnescape(act[1]))
		o.during("sign-in, writer failing on "+text, dbfault.Writer, text, func() {
			_, status, body := postForm(t, b, action.String(), url.Values{"request": {req[1]}, "identity": {devidp.SubCamille}})
			wantServerError(t, "sign-in, writer failing on "+text, status, body)
		})
	}
	// A genuine refusal (no second factor) is still 403 and journaled.
	before := o.db.Events(t)
	if _, status, _ := signInAidant(t, browser(t), s, devidp.SubDominique); status != http.StatusForbidden {
		t.Errorf("sign-in without a second factor: %d", status)
	}
	if got := o.db.EventTypes(t, before); !slices.Equal(got, []string{audit.AidantLoginRefused}) {
		t.Errorf("the refused sign-in journaled %v", got)
	}
}
