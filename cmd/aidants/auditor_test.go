package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/devidp"
)

// testAuditor is an auditor registered with `auditor add`, holding its key.
type testAuditor struct {
	id  string
	key *ecdsa.PrivateKey
}

func addAuditor(t *testing.T, s *testServer, scope ...string) testAuditor {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k := jose.JSONWebKey{Key: priv, KeyID: "a1", Algorithm: "ES256", Use: "sig"}
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
	file := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(file, pub, 0o600)
	out := cli{t, []string{"--dev", "--data", s.Data}}.ok(append([]string{"auditor", "add", "--name", "Inspection", "--jwks", file}, scope...)...)
	m := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("auditor add said: %s", out)
	}
	return testAuditor{id: m[1], key: priv}
}

// assertion signs a client assertion; edit changes its claims.
func (a testAuditor) assertion(t *testing.T, s *testServer, key *ecdsa.PrivateKey, edit func(map[string]any)) string {
	t.Helper()
	if key == nil {
		key = a.key
	}
	now := time.Now()
	c := map[string]any{"iss": a.id, "sub": a.id, "aud": s.URL + "/oidc/token", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": randomJTI()}
	if edit != nil {
		edit(c)
	}
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "a1"}}, nil)
	b, _ := json.Marshal(c)
	obj, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := obj.CompactSerialize()
	return raw
}

func randomJTI() string { return rand.Text() }

// token asks the token endpoint with an assertion; it returns the status
// and the JSON answer.
func tokenRequest(t *testing.T, s *testServer, assertion string, extra url.Values) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"audit:read"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	for k, v := range extra {
		form[k] = v
	}
	resp, err := http.PostForm(s.URL+"/oidc/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func (a testAuditor) token(t *testing.T, s *testServer) string {
	t.Helper()
	status, body := tokenRequest(t, s, a.assertion(t, s, nil, nil), nil)
	tok, _ := body["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("auditor token: %d %v", status, body)
	}
	return tok
}

type apiAnswer struct {
	status int
	header http.Header
	body   string
}

func queryEvents(t *testing.T, s *testServer, token, query, accept string) apiAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/audit/events?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return apiAnswer{resp.StatusCode, resp.Header, b.String()}
}

type eventsPage struct {
	Events []struct {
		Index     int64           `json:"index"`
		Origin    string          `json:"origin"`
		LeafIndex int64           `json:"leaf_index"`
		Salt      []byte          `json:"salt"`
		Entry     []byte          `json:"entry"`
		LeafHash  string          `json:"leaf_hash"`
		Event     json.RawMessage `json:"event"`
	} `json:"events"`
	Next *string `json:"next"`
}

// TestAuditorSeesOnlyItsScope: an auditor scoped to organisation A gets
// 403 for B and never sees B's events; an auditor of the whole journal
// does; every query is journaled.
func TestAuditorSeesOnlyItsScope(t *testing.T) {
	s := startDev(t, "")
	a := browser(t)
	signInAidant(t, a, s, devidp.SubCamille)
	createOnSite(t, a, s, devidp.SubJosephine, onSiteForm("argent"))
	alexInOnlyTheSecondOrganisation(t, s)
	b := browser(t)
	signInAidant(t, b, s, devidp.SubAlex)
	createOnSite(t, b, s, devidp.SubAhmed, onSiteForm("social"))

	db := openDB(t, s)
	var orgA, orgB string
	db.R.Get(&orgA, `SELECT id FROM organisations WHERE siret = ?`, demoSIRET)
	db.R.Get(&orgB, `SELECT id FROM organisations WHERE siret = ?`, secondSIRET)

	scoped := addAuditor(t, s, "--organisations", demoSIRET)
	all := addAuditor(t, s, "--all")
	tokA, tokAll := scoped.token(t, s), all.token(t, s)

	page := func(tok, q string) eventsPage {
		t.Helper()
		r := queryEvents(t, s, tok, q, "application/json")
		var p eventsPage
		if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &p) != nil {
			t.Fatalf("GET /api/audit/events?%s: %d %s", q, r.status, r.body)
		}
		return p
	}
	orgsOf := func(p eventsPage) map[string]int {
		out := map[string]int{}
		for _, e := range p.Events {
			var ev struct{ Organisation string }
			json.Unmarshal(e.Event, &ev)
			out[ev.Organisation]++
		}
		return out
	}
	queries := 0
	seen := orgsOf(page(tokA, "limit=1000"))
	queries++
	if seen[orgB] != 0 || seen[orgA] == 0 || len(seen) != 1 {
		t.Errorf("the auditor of A sees organisations %v (A %s, B %s)", seen, orgA, orgB)
	}
	if r := queryEvents(t, s, tokA, "organisation="+secondSIRET, ""); r.status != http.StatusForbidden {
		t.Errorf("the auditor of A filtering on B: %d %s", r.status, r.body)
	}
	if r := queryEvents(t, s, tokA, "organisation="+orgB, ""); r.status != http.StatusForbidden {
		t.Errorf("the auditor of A filtering on B's id: %d %s", r.status, r.body)
	}
	// An aidant, a person or a mandate of B only: refused as well.
	var alexMandate, ahmed string
	db.R.Get(&alexMandate, `SELECT id FROM mandates WHERE organisation_id = ?`, orgB)
	db.R.Get(&ahmed, `SELECT usager_id FROM mandates WHERE organisation_id = ?`, orgB)
	for _, q := range []string{"mandate=" + alexMandate, "usager=" + ahmed} {
		if r := queryEvents(t, s, tokA, q, ""); r.status != http.StatusForbidden {
			t.Errorf("the auditor of A asking %s of B: %d %s", q, r.status, r.body)
		}
	}
	if seen := orgsOf(page(tokA, "organisation="+demoSIRET)); seen[orgA] == 0 || len(seen) != 1 {
		t.Errorf("the auditor of A filtering on A sees %v", seen)
	}
	queries++
	seenAll := orgsOf(page(tokAll, "limit=1000"))
	queries++
	if seenAll[orgA] == 0 || seenAll[orgB] == 0 {
		t.Errorf("the auditor of everything sees %v", seenAll)
	}
	// Filters and pagination: two at a time, no overlap, in order.
	first := page(tokAll, "type=mandate.created&limit=1")
	queries++
	if len(first.Events) != 1 || first.Next == nil {
		t.Fatalf("first page: %+v", first)
	}
	// The entry is SHA-256(salt ‖ event), the leaf hash is the entry's,
	// and proves it in the signed tree.
	ev := first.Events[0]
	entry := sha256.Sum256(append(append([]byte{}, ev.Salt...), ev.Event...))
	if len(ev.Salt) != 32 || !bytes.Equal(entry[:], ev.Entry) {
		t.Errorf("entry %x is not SHA-256(salt ‖ event)", ev.Entry)
	}
	if want := tlog.RecordHash(entry[:]); ev.LeafHash != base64.StdEncoding.EncodeToString(want[:]) {
		t.Errorf("leaf hash %s is not the entry's", ev.LeafHash)
	}
	if ev.Origin == "" || ev.LeafIndex != ev.Index {
		t.Errorf("origin %q, leaf index %d of event %d", ev.Origin, ev.LeafIndex, ev.Index)
	}
	size, root, _ := thirdPartyCheckpoint(t, s.URL)
	_, proofBody := fetch(t, fmt.Sprintf("%s/audit/proof/inclusion?index=%d&size=%d", s.URL, ev.Index, size))
	var proof struct {
		LeafHash tlog.Hash   `json:"leaf_hash"`
		Hashes   []tlog.Hash `json:"hashes"`
	}
	json.Unmarshal(proofBody, &proof)
	if err := tlog.CheckRecord(proof.Hashes, size, root, ev.LeafIndex, tlog.RecordHash(entry[:])); err != nil {
		t.Errorf("the event's inclusion proof: %v", err)
	}
	second := page(tokAll, "type=mandate.created&limit=1&after="+*first.Next)
	queries++
	if len(second.Events) != 1 || second.Events[0].Index <= first.Events[0].Index {
		t.Fatalf("second page: %+v after %+v", second, first)
	}
	if third := page(tokAll, "type=mandate.created&limit=1&after="+mustIndex(second)); len(third.Events) != 0 {
		t.Errorf("a third mandate.created: %+v", third)
	}
	queries++
	if dem := page(tokAll, "demarche=social"); len(dem.Events) == 0 {
		t.Error("no event for démarche social")
	}
	queries++
	// NDJSON and CSV exports.
	nd := queryEvents(t, s, tokAll, "type=mandate.created", "application/x-ndjson")
	queries++
	if nd.status != http.StatusOK || !strings.HasPrefix(nd.header.Get("Content-Type"), "application/x-ndjson") || strings.Count(nd.body, "\n") != 2 {
		t.Errorf("ndjson: %d %s %q", nd.status, nd.header.Get("Content-Type"), nd.body)
	}
	cs := queryEvents(t, s, tokA, "", "text/csv")
	queries++
	rows, err := csv.NewReader(strings.NewReader(cs.body)).ReadAll()
	if err != nil || cs.status != http.StatusOK || len(rows) < 2 || rows[0][0] != "index" || rows[0][5] != "leaf_hash" {
		t.Fatalf("csv: %d %v %v", cs.status, err, rows)
	}
	for _, row := range rows[1:] {
		if row[9] != orgA {
			t.Errorf("csv row of another organisation: %v", row)
		}
	}
	// Bad requests change nothing and say why.
	for _, q := range []string{"limit=0", "limit=5000", "after=-3", "from=hier", "demarche=cuisine", "colour=blue"} {
		if r := queryEvents(t, s, tokAll, q, ""); r.status != http.StatusBadRequest || !strings.Contains(r.body, "invalid_request") {
			t.Errorf("?%s: %d %s", q, r.status, r.body)
		}
	}
	// Every answered query is on the journal, with the auditor as actor.
	var n int
	db.R.Get(&n, `SELECT COUNT(*) FROM audit_events WHERE type = 'audit.queried'`)
	if n != queries {
		t.Errorf("%d audit.queried events for %d queries", n, queries)
	}
	db.R.Get(&n, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied' AND body LIKE ?`, "%"+scoped.id+"%")
	if n != 4 {
		t.Errorf("%d access.denied for the out-of-scope queries, want 4", n)
	}
}

func mustIndex(p eventsPage) string {
	b, _ := json.Marshal(p.Events[len(p.Events)-1].Index)
	return string(b)
}

// TestAuditorTokenNeedsAValidAssertion: a wrong key, a wrong audience, an
// expired assertion and a reused jti are refused; the API takes only its
// own, unexpired Bearer tokens in the header.
func TestAuditorTokenNeedsAValidAssertion(t *testing.T) {
	s := startDev(t, "")
	a := addAuditor(t, s, "--all")
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	spent := a.assertion(t, s, nil, nil)
	if status, body := tokenRequest(t, s, spent, nil); status != http.StatusOK {
		t.Fatalf("a good assertion: %d %v", status, body)
	}
	cases := []struct {
		name      string
		assertion string
		extra     url.Values
		want      string
	}{
		{"signed by another key", a.assertion(t, s, other, nil), nil, "invalid_client"},
		{"for another audience", a.assertion(t, s, nil, func(c map[string]any) { c["aud"] = "https://ailleurs.example.fr/token" }), nil, "invalid_client"},
		{"expired", a.assertion(t, s, nil, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), nil, "invalid_client"},
		{"reused (same jti)", spent, nil, "invalid_client"},
		{"of an unknown client", a.assertion(t, s, nil, func(c map[string]any) { c["iss"], c["sub"] = "adt_inconnu", "adt_inconnu" }), nil, "invalid_client"},
		{"another scope", a.assertion(t, s, nil, nil), url.Values{"scope": {"openid"}}, "invalid_scope"},
		{"with a secret", a.assertion(t, s, nil, nil), url.Values{"client_secret": {"x"}}, "unauthorized_client"},
	}
	for _, c := range cases {
		status, body := tokenRequest(t, s, c.assertion, c.extra)
		if status < 400 || body["error"] != c.want {
			t.Errorf("%s: %d %v, want %s", c.name, status, body, c.want)
		}
	}
	tok := a.token(t, s)
	if r := queryEvents(t, s, tok, "", ""); r.status != http.StatusOK {
		t.Fatalf("a good token: %d %s", r.status, r.body)
	}
	// Not in the query string, not without a token, not a forgery.
	if r := queryEvents(t, s, "", "access_token="+url.QueryEscape(tok), ""); r.status != http.StatusUnauthorized {
		t.Errorf("token in the query string: %d", r.status)
	}
	if r := queryEvents(t, s, "", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("no token: %d", r.status)
	}
	parts := strings.Split(tok, ".")
	if r := queryEvents(t, s, parts[0]+"."+parts[1]+".AAAA", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("a forged signature: %d", r.status)
	}
}

func TestAuditorCommands(t *testing.T) {
	dir := t.TempDir()
	c := cli{t, []string{"--dev", "--data", dir}}
	c.ok("migrate")
	c.ok("org", "add", "--name", "Structure", "--siret", demoSIRET)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k := jose.JSONWebKey{Key: priv, KeyID: "a1", Algorithm: "ES256", Use: "sig"}
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
	all, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}})
	pubFile, privFile := filepath.Join(dir, "pub.json"), filepath.Join(dir, "priv.json")
	os.WriteFile(pubFile, pub, 0o600)
	os.WriteFile(privFile, all, 0o600)
	out := c.ok("auditor", "add", "--name", "Inspection générale", "--jwks", pubFile, "--organisations", demoSIRET)
	if !strings.Contains(out, "client_id: adt_") || !strings.Contains(out, "scope: organisations org_") {
		t.Fatalf("auditor add said:\n%s", out)
	}
	c.ok("auditor", "add", "--name", "Cour des comptes", "--jwks-uri", "https://ccomptes.example.fr/jwks", "--all")
	list := c.ok("auditor", "list")
	for _, want := range []string{"Inspection générale", "organisations org_", "Cour des comptes", "all", "https://ccomptes.example.fr/jwks"} {
		if !strings.Contains(list, want) {
			t.Errorf("auditor list lacks %q:\n%s", want, list)
		}
	}
	base := []string{"auditor", "add", "--name", "X"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(base, "--jwks", pubFile), "give the scope"},
		{append(base, "--jwks", pubFile, "--all", "--organisations", demoSIRET), "give the scope"},
		{append(base, "--all"), "--jwks FILE or --jwks-uri URL"},
		{append(base, "--jwks", privFile, "--all"), "private key"},
		{append(base, "--jwks-uri", "http://clair.example.fr/jwks", "--all"), "https URL"},
		{append(base, "--jwks", pubFile, "--organisations", secondSIRET), "no organisation with SIRET"},
		{append(base, "--jwks", pubFile, "--services", "svc_inconnu"), "not a registered service"},
	} {
		_, err := c.run(tc.args...)
		if err == nil || !strings.Contains(oneLine(err), tc.want) {
			t.Errorf("aidants %s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if after := c.ok("auditor", "list"); after != list {
		t.Errorf("a mistake registered an auditor:\n%s", after)
	}
}
