package auditor

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jmoiron/sqlx"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/audit"
	"aidants/internal/jwtverify"
	"aidants/keys"
	"aidants/mandate"
	"aidants/provider"
	"aidants/store"
)

// ClientCredentials serves the client credentials grant at the provider's
// token endpoint: private_key_jwt only, scope audit:read, a JWT access
// token (RFC 9068) for the query API.
func (api *API) ClientCredentials(w http.ResponseWriter, r *http.Request, form url.Values, hasBasic bool) {
	if hasBasic || form.Has("client_secret") {
		api.provider.WriteError(w, provider.UnauthorizedClient("auditors authenticate with private_key_jwt only"))
		return
	}
	if s := form.Get("scope"); s != "" && s != Scope {
		api.provider.WriteError(w, provider.InvalidScope("the only scope is "+Scope))
		return
	}
	id, err := api.provider.ClientAssertion(r.Context(), form, api.keysOf)
	if err != nil {
		api.provider.WriteError(w, err)
		return
	}
	now := api.now()
	claims := map[string]any{"iss": api.provider.Issuer(), "aud": api.audience(), "sub": id, "client_id": id, "scope": Scope,
		"iat": now.Unix(), "exp": now.Add(TokenTTL).Unix(), "jti": store.NewID("at")}
	signer, err := api.keys.Signer(r.Context(), keys.UseToken, jose.ES256, "at+jwt")
	if err != nil {
		api.provider.WriteError(w, err)
		return
	}
	b, _ := json.Marshal(claims)
	obj, err := signer.Sign(b)
	if err != nil {
		api.provider.WriteError(w, err)
		return
	}
	token, _ := obj.CompactSerialize()
	provider.WriteJSON(w, http.StatusOK, map[string]any{"access_token": token, "token_type": "Bearer",
		"expires_in": int(TokenTTL.Seconds()), "scope": Scope})
}

func (api *API) audience() string { return api.provider.Issuer() + "/api/audit" }

// apiError answers a JSON refusal with a status.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`"`)
	}
	provider.WriteJSON(w, status, map[string]string{"error": code, "error_description": msg})
}

// serverError answers a failure of the server itself (a database that
// fails, a deadline): 500 server_error, or 503 temporarily_unavailable,
// with a fixed description and the detail logged. It is never a refusal.
func (api *API) serverError(w http.ResponseWriter, err error) { api.provider.WriteError(w, err) }

// bearer returns the auditor of a valid access token, or answers 401 (or
// a server error when the token cannot be checked).
func (api *API) bearer(w http.ResponseWriter, r *http.Request) *Auditor {
	bad := func(msg string) *Auditor { apiError(w, http.StatusUnauthorized, "invalid_token", msg); return nil }
	if r.URL.Query().Has("access_token") {
		return bad("the access token goes in the Authorization header, never in the URL")
	}
	scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return bad("a Bearer access token is required")
	}
	tok, err := jwtverify.Parse(raw, jose.ES256)
	if err != nil {
		return bad("not an access token of this instance")
	}
	if tok.Type != "at+jwt" {
		return bad("not an access token (typ)")
	}
	key, ok, err := api.keys.Public(r.Context(), tok.KeyID)
	if err != nil {
		api.serverError(w, fmt.Errorf("auditor: bearer: keys: %w", err))
		return nil
	}
	if !ok {
		return bad("unknown signing key")
	}
	var c struct {
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
	}
	if _, err := tok.Verify(key, jwtverify.Expect{Type: "at+jwt", Issuer: api.provider.Issuer(), Audience: []string{api.audience()}, Now: api.now()}, &c); err != nil {
		if errors.Is(err, jwtverify.ErrSignature) {
			return bad("the signature does not verify")
		}
		return bad("expired, or not a token for this API")
	}
	if !slices.Contains(strings.Fields(c.Scope), Scope) {
		return bad("not a token for this API (scope)")
	}
	a, err := api.Get(r.Context(), c.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return bad("unknown or disabled auditor")
	}
	if err != nil {
		api.serverError(w, fmt.Errorf("auditor: bearer: %w", err))
		return nil
	}
	return a
}

// maxLimit bounds a page of JSON; exports (NDJSON, CSV) stream everything
// that matches unless a limit is given.
const maxLimit = 1000

// Events serves GET /api/audit/events. A query outside the auditor's
// scope is refused (403) and journaled (access.denied); a query answered
// is journaled (audit.queried) once its first events are read and before
// any is sent. A database that fails gets a server error, and no event:
// the journal says only what happened.
func (api *API) Events(w http.ResponseWriter, r *http.Request) {
	a := api.bearer(w, r)
	if a == nil {
		return
	}
	q := r.URL.Query()
	f, after, limit, err := api.filter(q)
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if !api.inScope(w, r, a, q, &f) {
		return
	}
	format := negotiate(r.Header.Get("Accept"))
	if format == "json" && (limit == 0 || limit > maxLimit) {
		if limit > maxLimit {
			apiError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("limit: at most %d", maxLimit))
			return
		}
		limit = 100
	}
	// The first events (a JSON page: all of them) are read before the
	// query is journaled, and the query is on the journal before any
	// answer.
	first := limit
	if format != "json" && (first == 0 || first > streamChunk) {
		first = streamChunk
	}
	var page []audit.Entry
	if err := api.log.Query(r.Context(), f, after, first, func(e audit.Entry) error { page = append(page, e); return nil }); err != nil {
		api.serverError(w, fmt.Errorf("auditor: query: %w", err))
		return
	}
	detail := queryDetail(q)
	detail["format"] = format
	if err := api.log.Write(r.Context(), func(tx *audit.Tx) error {
		_, err := tx.Append(audit.Event{Type: audit.AuditQueried, Actor: audit.Actor{Kind: audit.ActorAuditor, ID: a.ID}, Detail: detail})
		return err
	}); err != nil {
		api.serverError(w, fmt.Errorf("auditor: journal the query: %w", err))
		return
	}
	// each writes the events read, then, for an export that filled its
	// first chunk, the rest.
	each := func(write func(audit.Entry) error) error {
		for _, e := range page {
			if err := write(e); err != nil {
				return err
			}
		}
		if len(page) < first || (limit > 0 && len(page) >= limit) {
			return nil
		}
		more := 0
		if limit > 0 {
			more = limit - len(page)
		}
		return api.log.Query(r.Context(), f, page[len(page)-1].Index, more, write)
	}
	api.answer(r.Context(), w, format, limit, page, each)
}

// inScope checks the filters against the auditor's scope; it answers the
// refusal (journaled) or the server's error itself and returns false. It
// turns an organisation filter given as a SIRET into the id.
func (api *API) inScope(w http.ResponseWriter, r *http.Request, a *Auditor, q url.Values, f *audit.Filter) bool {
	var err error
	if f.Organisation, err = api.organisationID(r, f.Organisation); err != nil {
		api.serverError(w, err)
		return false
	}
	msg := outOfScope(a, *f)
	if msg == "" {
		if msg, err = api.outOfOrganisations(r, a, *f); err != nil {
			api.serverError(w, fmt.Errorf("auditor: scope: %w", err))
			return false
		}
	}
	if msg != "" {
		if err := api.denied(r, a, q, msg); err != nil {
			api.serverError(w, err)
			return false
		}
		apiError(w, http.StatusForbidden, "insufficient_scope", msg)
		return false
	}
	if !a.All {
		f.Restricted, f.Organisations, f.Services = true, a.Organisations, a.Services
	}
	return true
}

// streamChunk is how many events of an export are read before the query
// is journaled.
const streamChunk = 500

// answer writes a journaled query's events: a JSON page (page, complete),
// or an export whose events each writes.
func (api *API) answer(ctx context.Context, w http.ResponseWriter, format string, limit int, page []audit.Entry, each func(func(audit.Entry) error) error) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	bw := bufio.NewWriterSize(w, 32<<10)
	defer bw.Flush()
	switch format {
	case "ndjson":
		h.Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false) // each event's bytes exactly as committed
		abortOn(each(func(e audit.Entry) error {
			l, err := api.line(ctx, e)
			if err != nil {
				return err
			}
			return enc.Encode(l)
		}))
	case "csv":
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="journal.csv"`)
		cw := csv.NewWriter(bw)
		cw.Write([]string{"index", "origin", "leaf_index", "salt", "entry", "leaf_hash", "time", "type", "actor", "organisation", "aidant", "usager", "mandate", "service", "demarches", "event"})
		abortOn(each(func(e audit.Entry) error {
			ev := e.Event
			l, err := api.line(ctx, e)
			if err != nil {
				return err
			}
			cw.Write([]string{strconv.FormatInt(e.Index, 10), l.Origin, strconv.FormatInt(l.LeafIndex, 10), l.Salt, l.Entry, l.LeafHash,
				ev.Time.UTC().Format(time.RFC3339Nano), ev.Type,
				ev.Actor.Kind + ":" + ev.Actor.ID, ev.Organisation, ev.Aidant, ev.Usager, ev.Mandate, ev.Service,
				strings.Join(ev.Demarches, " "), string(e.Body)})
			return cw.Error()
		}))
		cw.Flush()
	default:
		lines := make([]eventLine, 0, len(page))
		for _, e := range page {
			l, err := api.line(ctx, e)
			if err != nil {
				api.serverError(w, fmt.Errorf("auditor: locate %d: %w", e.Index, err))
				return
			}
			lines = append(lines, l)
		}
		var next any
		if len(lines) == limit {
			next = strconv.FormatInt(lines[len(lines)-1].Index, 10)
		}
		h.Set("Content-Type", "application/json")
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false) // each event's bytes exactly as committed
		enc.Encode(map[string]any{"events": lines, "next": next})
	}
}

// eventLine is one event as the API answers it. With its salt, anyone
// recomputes its public entry, SHA-256(salt ‖ event), and leaf hash,
// tlog.RecordHash(entry); its origin and leaf index let the auditor ask
// /audit/proof/inclusion and check it against a signed checkpoint (SPEC
// §6.1). Index is its position in the journal, the cursor of the pages.
type eventLine struct {
	Index     int64           `json:"index"`
	Origin    string          `json:"origin"`
	LeafIndex int64           `json:"leaf_index"`
	Salt      string          `json:"salt"`
	Entry     string          `json:"entry"`
	LeafHash  string          `json:"leaf_hash"`
	Event     json.RawMessage `json:"event"`
}

func (api *API) line(ctx context.Context, e audit.Entry) (eventLine, error) {
	origin, leaf, err := api.log.Locate(ctx, e.Index)
	if err != nil {
		return eventLine{}, err
	}
	entry := e.Entry()
	lh := tlog.RecordHash(entry[:])
	return eventLine{Index: e.Index, Origin: origin, LeafIndex: leaf, Salt: base64.StdEncoding.EncodeToString(e.Salt),
		Entry: base64.StdEncoding.EncodeToString(entry[:]), LeafHash: base64.StdEncoding.EncodeToString(lh[:]),
		Event: json.RawMessage(e.Body)}, nil
}

func negotiate(accept string) string {
	switch {
	case strings.Contains(accept, "application/x-ndjson"):
		return "ndjson"
	case strings.Contains(accept, "text/csv"):
		return "csv"
	default:
		return "json"
	}
}

// filter reads the query's filters; its errors are the request's
// mistakes. organisation is a SIRET or an organisation id (see
// organisationID).
func (api *API) filter(q url.Values) (audit.Filter, int64, int, error) {
	var f audit.Filter
	known := map[string]bool{"usager": true, "aidant": true, "organisation": true, "service": true, "mandate": true,
		"demarche": true, "type": true, "from": true, "to": true, "after": true, "limit": true}
	for k, v := range q {
		if !known[k] {
			return f, 0, 0, fmt.Errorf("unknown parameter %q", k)
		}
		if len(v) != 1 {
			return f, 0, 0, fmt.Errorf("%s: give it once", k)
		}
	}
	f.Usager, f.Aidant, f.Service, f.Mandate, f.Type = q.Get("usager"), q.Get("aidant"), q.Get("service"), q.Get("mandate"), q.Get("type")
	f.Organisation = q.Get("organisation")
	if d := q.Get("demarche"); d != "" {
		if _, err := mandate.ParseDemarches([]string{d}); err != nil {
			return f, 0, 0, fmt.Errorf("demarche: %v", err)
		}
		f.Demarche = d
	}
	var err error
	if f.From, err = when(q.Get("from")); err != nil {
		return f, 0, 0, fmt.Errorf("from: %v", err)
	}
	if f.To, err = when(q.Get("to")); err != nil {
		return f, 0, 0, fmt.Errorf("to: %v", err)
	}
	after := int64(-1)
	if s := q.Get("after"); s != "" {
		if after, err = strconv.ParseInt(s, 10, 64); err != nil || after < 0 {
			return f, 0, 0, errors.New("after: the index of the last event received")
		}
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 {
			return f, 0, 0, errors.New("limit: a positive number")
		}
	}
	return f, after, limit, nil
}

// organisationID turns an organisation filter given as a SIRET into the
// organisation's id; an unknown SIRET stays as given (and matches no
// organisation in scope), a database that fails is an error.
func (api *API) organisationID(r *http.Request, o string) (string, error) {
	if len(o) != 14 || strings.Trim(o, "0123456789") != "" {
		return o, nil
	}
	var id string
	err := api.db.R.GetContext(r.Context(), &id, api.db.Rebind(`SELECT id FROM organisations WHERE siret = ?`), o)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return o, nil
	case err != nil:
		return "", fmt.Errorf("auditor: organisation %s: %w", o, err)
	}
	return id, nil
}

// when reads an RFC 3339 time or a date (midnight UTC).
func when(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, errors.New("an RFC 3339 time or a date YYYY-MM-DD")
	}
	return t, nil
}

// outOfScope says why a filter asks for what the auditor may not see, or
// "" when it does not.
func outOfScope(a *Auditor, f audit.Filter) string {
	if a.All {
		return ""
	}
	if f.Organisation != "" && !slices.Contains(a.Organisations, f.Organisation) {
		return "this organisation is outside your scope"
	}
	if f.Service != "" && len(a.Organisations) == 0 && !slices.Contains(a.Services, f.Service) {
		return "this service is outside your scope"
	}
	return ""
}

// abortOn cuts a streamed export that failed half-way, so that the client
// sees a broken transfer rather than a complete-looking file.
func abortOn(err error) {
	if err != nil {
		panic(http.ErrAbortHandler)
	}
}

// outOfOrganisations checks, for an auditor limited to organisations, that
// an aidant, person or mandate named by the filters belongs to them: a
// filter outside the scope is refused (SPEC §8.4), not merely answered
// with nothing.
func (api *API) outOfOrganisations(r *http.Request, a *Auditor, f audit.Filter) (string, error) {
	if a.All || len(a.Organisations) == 0 {
		return "", nil
	}
	in := func(q string, arg string) (bool, error) {
		query, args, err := sqlx.In(q, arg, []string(a.Organisations))
		if err != nil {
			return false, err
		}
		var n int
		err = api.db.R.GetContext(r.Context(), &n, api.db.Rebind(query), args...)
		return n > 0, err
	}
	for _, c := range []struct{ value, query, msg string }{
		{f.Aidant, `SELECT COUNT(*) FROM memberships WHERE aidant_id = ? AND organisation_id IN (?)`, "this aidant is outside your scope"},
		{f.Mandate, `SELECT COUNT(*) FROM mandates WHERE id = ? AND organisation_id IN (?)`, "this mandate is outside your scope"},
		{f.Usager, `SELECT COUNT(*) FROM mandates WHERE usager_id = ? AND organisation_id IN (?)`, "this person is outside your scope"},
	} {
		if c.value == "" {
			continue
		}
		ok, err := in(c.query, c.value)
		if err != nil {
			return "", err
		}
		if !ok {
			return c.msg, nil
		}
	}
	return "", nil
}

// denied journals an out-of-scope query; the refusal is answered only
// once it is on the journal.
func (api *API) denied(r *http.Request, a *Auditor, q url.Values, why string) error {
	detail := queryDetail(q)
	detail["path"], detail["why"] = r.URL.Path, why
	err := api.log.Write(r.Context(), func(tx *audit.Tx) error {
		_, err := tx.Append(audit.Event{Type: audit.AccessDenied, Actor: audit.Actor{Kind: audit.ActorAuditor, ID: a.ID}, Detail: detail})
		return err
	})
	if err != nil {
		return fmt.Errorf("auditor: journal a refusal: %w", err)
	}
	return nil
}

// queryDetail records a query's parameters (pseudonymous ids, codes and
// dates), each cut to 200 bytes.
func queryDetail(q url.Values) map[string]any {
	d := map[string]any{}
	for k := range q {
		v := q.Get(k)
		if len(v) > 200 {
			v = v[:200]
		}
		d[k] = v
	}
	return d
}
