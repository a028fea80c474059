package auditor

import (
	"bufio"
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

// apiError answers a JSON error with a status.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`"`)
	}
	provider.WriteJSON(w, status, map[string]string{"error": code, "error_description": msg})
}

// bearer returns the auditor of a valid access token, or answers 401.
func (api *API) bearer(w http.ResponseWriter, r *http.Request) *Auditor {
	bad := func(msg string) *Auditor { apiError(w, http.StatusUnauthorized, "invalid_token", msg); return nil }
	if r.URL.Query().Has("access_token") {
		return bad("the access token goes in the Authorization header, never in the URL")
	}
	scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return bad("a Bearer access token is required")
	}
	tok, err := jose.ParseSigned(strings.TrimSpace(raw), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Signatures) != 1 {
		return bad("not an access token of this instance")
	}
	h := tok.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" {
		return bad("not an access token (typ)")
	}
	key, ok, err := api.keys.Public(r.Context(), h.KeyID)
	if err != nil || !ok {
		return bad("unknown signing key")
	}
	payload, err := tok.Verify(key)
	if err != nil {
		return bad("the signature does not verify")
	}
	var c struct {
		Iss      string `json:"iss"`
		Aud      string `json:"aud"`
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
		Exp      int64  `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Iss != api.provider.Issuer() || c.Aud != api.audience() ||
		!slices.Contains(strings.Fields(c.Scope), Scope) || !api.now().Before(time.Unix(c.Exp, 0)) {
		return bad("expired, or not a token for this API")
	}
	a, err := api.Get(r.Context(), c.ClientID)
	if err != nil {
		return bad("unknown or disabled auditor")
	}
	return a
}

// maxLimit bounds a page of JSON; exports (NDJSON, CSV) stream everything
// that matches unless a limit is given.
const maxLimit = 1000

// Events serves GET /api/audit/events.
func (api *API) Events(w http.ResponseWriter, r *http.Request) {
	a := api.bearer(w, r)
	if a == nil {
		return
	}
	q := r.URL.Query()
	f, after, limit, err := api.filter(r, q)
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	msg := outOfScope(a, f)
	if msg == "" {
		if msg, err = api.outOfOrganisations(r, a, f); err != nil {
			apiError(w, http.StatusInternalServerError, "server_error", "the scope could not be checked")
			return
		}
	}
	if msg != "" {
		api.denied(r, a, q, msg)
		apiError(w, http.StatusForbidden, "insufficient_scope", msg)
		return
	}
	if !a.All {
		f.Restricted, f.Organisations, f.Services = true, a.Organisations, a.Services
	}
	format := negotiate(r.Header.Get("Accept"))
	if format == "json" && (limit == 0 || limit > maxLimit) {
		if limit > maxLimit {
			apiError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("limit: at most %d", maxLimit))
			return
		}
		limit = 100
	}
	// The query is on the journal before any answer.
	detail := queryDetail(q)
	detail["format"] = format
	if err := api.log.Write(r.Context(), func(tx *audit.Tx) error {
		_, err := tx.Append(audit.Event{Type: audit.AuditQueried, Actor: audit.Actor{Kind: audit.ActorAuditor, ID: a.ID}, Detail: detail})
		return err
	}); err != nil {
		apiError(w, http.StatusInternalServerError, "server_error", "the query could not be journaled")
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	bw := bufio.NewWriterSize(w, 32<<10)
	defer bw.Flush()
	switch format {
	case "ndjson":
		h.Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(bw)
		abortOn(api.log.Query(r.Context(), f, after, limit, func(e audit.Entry) error { return enc.Encode(line(e)) }))
	case "csv":
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="journal.csv"`)
		cw := csv.NewWriter(bw)
		cw.Write([]string{"index", "leaf_hash", "time", "type", "actor", "organisation", "aidant", "usager", "mandate", "service", "demarches", "event"})
		err := api.log.Query(r.Context(), f, after, limit, func(e audit.Entry) error {
			ev := e.Event
			cw.Write([]string{strconv.FormatInt(e.Index, 10), leafHash(e.Body), ev.Time.UTC().Format(time.RFC3339Nano), ev.Type,
				ev.Actor.Kind + ":" + ev.Actor.ID, ev.Organisation, ev.Aidant, ev.Usager, ev.Mandate, ev.Service,
				strings.Join(ev.Demarches, " "), string(e.Body)})
			return cw.Error()
		})
		abortOn(err)
		cw.Flush()
	default:
		var page []eventLine
		if err := api.log.Query(r.Context(), f, after, limit, func(e audit.Entry) error { page = append(page, line(e)); return nil }); err != nil {
			apiError(w, http.StatusInternalServerError, "server_error", "the journal could not be read")
			return
		}
		var next any
		if len(page) == limit {
			next = strconv.FormatInt(page[len(page)-1].Index, 10)
		}
		if page == nil {
			page = []eventLine{}
		}
		h.Set("Content-Type", "application/json")
		json.NewEncoder(bw).Encode(map[string]any{"events": page, "next": next})
	}
}

// eventLine is one event as the API answers it: its index and leaf hash
// let the auditor ask /audit/proof/inclusion and check it against a
// signed checkpoint.
type eventLine struct {
	Index    int64           `json:"index"`
	LeafHash string          `json:"leaf_hash"`
	Event    json.RawMessage `json:"event"`
}

func line(e audit.Entry) eventLine {
	return eventLine{Index: e.Index, LeafHash: leafHash(e.Body), Event: json.RawMessage(e.Body)}
}

func leafHash(body []byte) string {
	h := tlog.RecordHash(body)
	return base64.StdEncoding.EncodeToString(h[:])
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

// filter reads the query's filters. organisation is a SIRET or an
// organisation id.
func (api *API) filter(r *http.Request, q url.Values) (audit.Filter, int64, int, error) {
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
	if o := q.Get("organisation"); o != "" {
		f.Organisation = o
		if len(o) == 14 && strings.Trim(o, "0123456789") == "" {
			var id string
			if err := api.db.R.GetContext(r.Context(), &id, api.db.Rebind(`SELECT id FROM organisations WHERE siret = ?`), o); err == nil {
				f.Organisation = id
			}
		}
	}
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

// denied journals an out-of-scope query.
func (api *API) denied(r *http.Request, a *Auditor, q url.Values, why string) {
	detail := queryDetail(q)
	detail["path"], detail["why"] = r.URL.Path, why
	api.log.Write(r.Context(), func(tx *audit.Tx) error {
		_, err := tx.Append(audit.Event{Type: audit.AccessDenied, Actor: audit.Actor{Kind: audit.ActorAuditor, ID: a.ID}, Detail: detail})
		return err
	})
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
