package auth_test

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"aidants/audit"
	"aidants/auth"
	"aidants/devidp"
	"aidants/mandate"
	"aidants/org"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const (
	testSIRET     = "98765432100015"
	closedSIRET   = "12345678900015"
	aidantsClient = "aidants-test"
	fcClient      = "aidants-fc-test"
	clientSecret  = "dev-client-secret-for-auth-tests"

	// Extra people of the aidants' provider, besides devidp's defaults.
	subMorgan    = "dev-aidant-morgan"
	emailMorgan  = "morgan.roux@france-services.example"
	subStranger  = "dev-inconnu"
	emailStanger = "inconnu@example.org"
)

// clock is the service's (and the providers') controllable clock. It
// follows the real time plus an offset, because the audit writer and
// go-oidc use the real clock.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// envOptions vary the harness.
type envOptions struct {
	dialect store.Dialect // SQLite unless set
	db      *store.DB     // an already opened database (storetest.Each)
	tls     bool          // an https server and Config.Secure
	// acr is what both providers answer as acr, and what the service asks
	// of them as acr_values ("eidas1" and FranceConnect only, unless set).
	acr string
	// aidantsRP and fcRP change the relying parties' settings.
	aidantsRP, fcRP func(*auth.ProviderConfig)
}

// env is the service with both development providers mounted on one test
// server, like cmd/aidants mounts them in dev mode, and a seeded directory.
type env struct {
	t     *testing.T
	db    *store.DB
	log   *audit.Log
	dir   *org.Directory
	svc   *auth.Service
	srv   *httptest.Server
	clock *clock

	aidantsIdP *devidp.Provider
	fcIdP      *devidp.Provider
	logs       *syncBuffer // the service's log
	// down makes a path of the providers answer 503 (an outage).
	down sync.Map
	// tokenRequests counts the requests to the providers' token endpoints.
	tokenRequests atomic.Int64

	org     *org.Organisation
	aidants map[string]*org.Aidant // by provider subject

	mu        sync.Mutex
	last      result
	logoutURL string
}

// result is what the last handler call saw, for the test to assert with
// errors.Is / errors.As rather than on a rendered page.
type result struct {
	err       error
	answer    *auth.Answer
	principal *auth.Principal
}

var operator = audit.Actor{Kind: audit.ActorOperator, ID: "test"}

func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	ctx := context.Background()
	db := opts.db
	if db == nil {
		d := opts.dialect
		if d == "" {
			d = store.SQLite
		}
		db = storetest.Open(t, d)
	}
	skey, err := audit.GenerateKey("test.invalid/audit")
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(ctx, db, audit.Options{SigningKey: skey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })

	mux := http.NewServeMux()
	var srv *httptest.Server
	if opts.tls {
		srv = httptest.NewTLSServer(noPanic(t, mux))
	} else {
		srv = httptest.NewServer(noPanic(t, mux))
	}
	t.Cleanup(srv.Close)

	e := &env{t: t, db: db, log: log, dir: org.New(log), srv: srv, clock: &clock{}, aidants: map[string]*org.Aidant{}, logs: &syncBuffer{}}

	ids := append(devidp.AidantIdentities(testSIRET),
		devidp.Identity{Sub: subMorgan, MFA: true, Claims: map[string]any{
			"given_name": "Morgan", "usual_name": "Roux", "email": emailMorgan, "email_verified": true, "uid": "uid-morgan", "siret": closedSIRET}},
		devidp.Identity{Sub: subStranger, MFA: true, Claims: map[string]any{
			"given_name": "Claude", "usual_name": "Inconnu", "email": emailStanger, "email_verified": true, "uid": "uid-inconnu", "siret": testSIRET}},
	)
	e.aidantsIdP, err = devidp.New(devidp.Options{
		Issuer: srv.URL + "/dev/aidants", Kind: devidp.KindAidants, Identities: ids, Now: e.clock.Now, ACR: opts.acr,
		Clients: []devidp.Client{{ID: aidantsClient, Secret: clientSecret,
			RedirectURIs: []string{srv.URL + "/cb/aidants"}, PostLogoutRedirectURIs: []string{srv.URL + "/bye"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.fcIdP, err = devidp.New(devidp.Options{
		Issuer: srv.URL + "/dev/franceconnect", Kind: devidp.KindFranceConnect, Identities: devidp.UsagerIdentities(), Now: e.clock.Now, ACR: opts.acr,
		Clients: []devidp.Client{{ID: fcClient, Secret: clientSecret,
			RedirectURIs: []string{srv.URL + "/cb/fc"}, PostLogoutRedirectURIs: []string{srv.URL + "/bye"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dev/aidants/", e.provider(e.aidantsIdP))
	mux.Handle("/dev/franceconnect/", e.provider(e.fcIdP))

	aidantsRP := auth.ProviderConfig{
		Issuer: e.aidantsIdP.Issuer(), ClientID: aidantsClient, ClientSecret: clientSecret,
		Scopes:      []string{"openid", "given_name", "usual_name", "email", "uid", "siret"},
		RedirectURL: srv.URL + "/cb/aidants", RequireMFA: true, MFAAMRs: []string{"mfa"},
		MatchEmailRequiresVerified: true,
	}
	fcRP := auth.ProviderConfig{
		Issuer: e.fcIdP.Issuer(), ClientID: fcClient, ClientSecret: clientSecret,
		Scopes:      []string{"openid", "given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry", "email"},
		ACRValues:   "eidas1",
		RedirectURL: srv.URL + "/cb/fc",
	}
	if opts.acr != "" {
		aidantsRP.ACRValues, fcRP.ACRValues = opts.acr, opts.acr
	}
	if opts.aidantsRP != nil {
		opts.aidantsRP(&aidantsRP)
	}
	if opts.fcRP != nil {
		opts.fcRP(&fcRP)
	}
	e.svc, err = auth.New(auth.Config{
		Secure:          opts.tls,
		SessionSecret:   []byte("0123456789abcdef0123456789abcdef-test"),
		IdleTimeout:     30 * time.Minute,
		AbsoluteTimeout: 12 * time.Hour,
		StepUpMaxAge:    15 * time.Minute,
		UsagerIdle:      15 * time.Minute,
		UsagerAbsolute:  time.Hour,
		PostLogoutURL:   srv.URL + "/bye",
		AidantsRP:       aidantsRP,
		FranceConnect:   fcRP,
		HTTPClient:      srv.Client(),
		Logger:          slog.New(slog.NewTextHandler(e.logs, nil)),
		Now:             e.clock.Now,
	}, log, e.dir)
	if err != nil {
		t.Fatal(err)
	}
	e.routes(mux)
	e.seed()
	return e
}

// provider serves a development provider, but answers 503 on the paths
// the test took down, and counts the token requests.
func (e *env) provider(p *devidp.Provider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, down := e.down.Load(r.URL.Path); down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/token") {
			e.tokenRequests.Add(1)
		}
		p.ServeHTTP(w, r)
	})
}

// syncBuffer collects the service's log across goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// noPanic fails the test when a handler panics. Without it a panic only
// closes the connection, and the client's transparent retry of the GET
// could make a broken check look like a refusal.
func noPanic(t *testing.T, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				t.Errorf("%s %s: handler panicked: %v", r.Method, r.URL.Path, v)
				http.Error(w, "panic", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

func (e *env) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /start", func(w http.ResponseWriter, r *http.Request) {
		target, err := e.svc.BeginAidantLogin(w, r, "/ok")
		e.redirectOr(w, r, target, err)
	})
	mux.HandleFunc("GET /stepup", func(w http.ResponseWriter, r *http.Request) {
		target, err := e.svc.BeginStepUp(w, r, "/ok")
		e.redirectOr(w, r, target, err)
	})
	mux.HandleFunc("GET /cb/aidants", func(w http.ResponseWriter, r *http.Request) {
		a, err := e.svc.Complete(w, r, auth.Aidants)
		if err == nil {
			err = e.svc.FinishAidant(w, r, a)
		}
		e.record(w, result{err: err, answer: a})
	})
	mux.HandleFunc("GET /startfc", func(w http.ResponseWriter, r *http.Request) {
		target, err := e.svc.BeginUsagerLogin(w, r, "")
		e.redirectOr(w, r, target, err)
	})
	mux.HandleFunc("GET /cb/fc", func(w http.ResponseWriter, r *http.Request) {
		a, err := e.svc.Complete(w, r, auth.FranceConnect)
		e.record(w, result{err: err, answer: a})
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		p, err := e.svc.Aidant(w, r)
		e.record(w, result{err: err, principal: p})
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		target, err := e.svc.LogoutAidant(w, r)
		e.mu.Lock()
		e.logoutURL = target
		e.mu.Unlock()
		if target == "" {
			target = "/bye"
		}
		e.redirectOr(w, r, target, err)
	})
	mux.HandleFunc("GET /bye", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "bye") })
}

func (e *env) redirectOr(w http.ResponseWriter, r *http.Request, target string, err error) {
	if err != nil {
		e.record(w, result{err: err})
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (e *env) record(w http.ResponseWriter, res result) {
	e.mu.Lock()
	e.last = res
	e.mu.Unlock()
	switch {
	case res.err != nil:
		http.Error(w, res.err.Error(), http.StatusForbidden)
	case res.principal != nil:
		fmt.Fprintf(w, "%s %s", res.principal.GivenName, res.principal.FamilyName)
	default:
		io.WriteString(w, "OK")
	}
}

func (e *env) lastResult() result {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

// seed creates the organisation and its people, all pending (added by
// email, bound at their first sign-in):
//   - Camille: MFA, habilitated, active — signs in;
//   - Dominique: no MFA at the provider;
//   - Sacha: disabled;
//   - Alex: habilitation ended yesterday;
//   - Morgan: only member of an organisation that was closed.
func (e *env) seed() {
	t, ctx := e.t, context.Background()
	t.Helper()
	var err error
	e.org, err = e.dir.AddOrganisation(ctx, operator, org.NewOrganisation{Name: "France services Test", SIRET: testSIRET})
	if err != nil {
		t.Fatal(err)
	}
	closed, err := e.dir.AddOrganisation(ctx, operator, org.NewOrganisation{Name: "Structure fermée", SIRET: closedSIRET})
	if err != nil {
		t.Fatal(err)
	}
	today := time.Now().In(mandate.Paris)
	nextYear, yesterday := today.AddDate(1, 0, 0).Format(time.DateOnly), today.AddDate(0, 0, -1).Format(time.DateOnly)
	add := func(sub, orgID, email, given, family, until string) *org.Aidant {
		a, err := e.dir.AddAidant(ctx, operator, org.NewAidant{OrganisationID: orgID, Email: email,
			GivenName: given, FamilyName: family, HabilitatedUntil: until})
		if err != nil {
			t.Fatalf("add %s: %v", email, err)
		}
		e.aidants[sub] = a
		return a
	}
	add(devidp.SubCamille, e.org.ID, devidp.EmailCamille, "Camille", "Martin", nextYear)
	add(devidp.SubDominique, e.org.ID, devidp.EmailDominique, "Dominique", "Bernard", nextYear)
	sacha := add(devidp.SubSacha, e.org.ID, devidp.EmailSacha, "Sacha", "Petit", nextYear)
	if err := e.dir.SetAidantActive(ctx, operator, sacha.ID, false, ""); err != nil {
		t.Fatal(err)
	}
	add(devidp.SubAlex, e.org.ID, devidp.EmailAlex, "Alex", "Moreau", yesterday)
	add(subMorgan, closed.ID, emailMorgan, "Morgan", "Roux", nextYear)
	inactive := false
	if _, err := e.dir.UpdateOrganisation(ctx, operator, closed.ID, org.OrganisationUpdate{Active: &inactive}); err != nil {
		t.Fatal(err)
	}
}

// browser is one person's browser: it keeps cookies and does not follow
// redirects, so that the test sees (and may tamper with) each step.
type browser struct {
	t      *testing.T
	e      *env
	client *http.Client
	jar    *cookiejar.Jar
}

func (e *env) browser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, e: e, jar: jar, client: &http.Client{
		Transport:     e.srv.Client().Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}}
}

// do sends a request and returns the response with its body read.
func (b *browser) do(method, rawURL string, form url.Values) (*http.Response, string) {
	t := b.t
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.abs(rawURL), body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

func (e *env) abs(u string) string {
	if strings.HasPrefix(u, "/") {
		return e.srv.URL + u
	}
	return u
}

var (
	requestField = regexp.MustCompile(`name="request" value="([^"]*)"`)
	formAction   = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
)

// flow is one trip to the provider.
type flow struct {
	authorizeURL *url.URL // where /start or /stepup sent the browser
	callback     string   // where the provider sends the browser back
}

// authenticate goes to start ("/start" or "/stepup"), picks the identity
// sub at the provider, and returns the callback URL without opening it.
func (b *browser) authenticate(start, sub string) flow {
	t := b.t
	t.Helper()
	resp, body := b.do(http.MethodGet, start, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("GET %s: %s, want a redirect to the provider: %s", start, resp.Status, body)
	}
	authz, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	resp, body = b.do(http.MethodGet, authz.String(), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("provider authorize page: %s: %s", resp.Status, body)
	}
	req, action := requestField.FindStringSubmatch(body), formAction.FindStringSubmatch(body)
	if req == nil || action == nil {
		t.Fatalf("no pick form on the provider page:\n%s", body)
	}
	target, err := authz.Parse(html.UnescapeString(action[1]))
	if err != nil {
		t.Fatal(err)
	}
	resp, body = b.do(http.MethodPost, target.String(), url.Values{"request": {html.UnescapeString(req[1])}, "identity": {sub}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("provider pick: %s: %s", resp.Status, body)
	}
	cb, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	return flow{authorizeURL: authz, callback: cb.String()}
}

// callback opens a callback URL and returns the response and what the
// service said of it (nil on success).
func (b *browser) callback(u string) (*http.Response, error) {
	b.t.Helper()
	resp, _ := b.do(http.MethodGet, u, nil)
	return resp, b.e.lastResult().err
}

// login signs sub in and returns the callback's answer and response.
func (b *browser) login(sub string) (*http.Response, result) {
	t := b.t
	t.Helper()
	f := b.authenticate("/start", sub)
	resp, _ := b.do(http.MethodGet, f.callback, nil)
	return resp, b.e.lastResult()
}

// mustLogin signs sub in and fails the test otherwise.
func (b *browser) mustLogin(sub string) *auth.Answer {
	t := b.t
	t.Helper()
	resp, res := b.login(sub)
	if res.err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in of %s: %s: %v", sub, resp.Status, res.err)
	}
	return res.answer
}

// me asks the service who is signed in.
func (b *browser) me() (*auth.Principal, error) {
	b.t.Helper()
	b.do(http.MethodGet, "/me", nil)
	r := b.e.lastResult()
	return r.principal, r.err
}

// mustMe returns the principal and fails the test when there is none.
func (b *browser) mustMe() *auth.Principal {
	b.t.Helper()
	p, err := b.me()
	if err != nil || p == nil {
		b.t.Fatalf("no principal: %v", err)
	}
	return p
}

// sessionCookie returns the aidant session cookie the browser holds.
func (b *browser) sessionCookie() *http.Cookie {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.jar.Cookies(u) {
		if strings.HasSuffix(c.Name, "aidants-session") {
			return c
		}
	}
	return nil
}

// sessionRow is a row of the sessions table.
type sessionRow struct {
	ID          string     `db:"id"`
	PrincipalID string     `db:"principal_id"`
	AuthTime    store.Time `db:"auth_time"`
	EndedAt     store.Time `db:"ended_at"`
}

func (e *env) sessions(t *testing.T) []sessionRow {
	t.Helper()
	var rows []sessionRow
	err := e.db.R.Select(&rows, `SELECT id, principal_id, auth_time, ended_at FROM sessions WHERE kind = 'aidant' ORDER BY created_at, id`)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func (e *env) openSessions(t *testing.T) []sessionRow {
	t.Helper()
	var open []sessionRow
	for _, s := range e.sessions(t) {
		if s.EndedAt.IsZero() {
			open = append(open, s)
		}
	}
	return open
}

// storedEvent is an audit event with its indexed aidant column.
type storedEvent struct {
	audit.Event
	Body     string
	AidantID string // the aidant_id column, "" when NULL
}

// events returns the audit events of a type ("" for all), oldest first.
func (e *env) events(t *testing.T, typ string) []storedEvent {
	t.Helper()
	var rows []struct {
		Body     []byte  `db:"body"`
		AidantID *string `db:"aidant_id"`
	}
	q, args := `SELECT body, aidant_id FROM audit_events ORDER BY idx`, []any{}
	if typ != "" {
		q, args = `SELECT body, aidant_id FROM audit_events WHERE type = ? ORDER BY idx`, []any{typ}
	}
	if err := e.db.R.Select(&rows, e.db.Rebind(q), args...); err != nil {
		t.Fatal(err)
	}
	out := make([]storedEvent, 0, len(rows))
	for _, r := range rows {
		ev, err := audit.ParseEvent(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		se := storedEvent{Event: ev, Body: string(r.Body)}
		if r.AidantID != nil {
			se.AidantID = *r.AidantID
		}
		out = append(out, se)
	}
	return out
}

// lastEvent returns the newest event of a type and fails when there is
// none.
func (e *env) lastEvent(t *testing.T, typ string) storedEvent {
	t.Helper()
	evs := e.events(t, typ)
	if len(evs) == 0 {
		t.Fatalf("no %s event", typ)
	}
	return evs[len(evs)-1]
}

// withQuery returns u with one query parameter replaced.
func withQuery(t *testing.T, u, name, value string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set(name, value)
	p.RawQuery = q.Encode()
	return p.String()
}

// wantRefused asserts err is a *auth.RefusedError with that reason.
func wantRefused(t *testing.T, err error, reason string) {
	t.Helper()
	var re *auth.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a *auth.RefusedError (%s)", err, reason)
	}
	if re.Reason != reason {
		t.Fatalf("refusal reason = %q, want %q", re.Reason, reason)
	}
}
