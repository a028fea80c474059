// Package auditor serves the administrations' query API on the journal
// (SPEC §8.4): auditors registered by the operator obtain, with OAuth2
// client credentials and private_key_jwt at the provider's token endpoint,
// a short-lived JWT access token for GET /api/audit/events, which answers
// only the events of their scope, and writes audit.queried for every
// query.
package auditor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/keys"
	"aidants/provider"
	"aidants/store"
)

// Auditor is a registered client of the query API.
type Auditor struct {
	ID            string     `db:"id"`
	Name          string     `db:"name"`
	JWKS          string     `db:"jwks"`
	JWKSURI       string     `db:"jwks_uri"`
	All           bool       `db:"scope_all"`
	Organisations store.List `db:"organisations"`
	Services      store.List `db:"services"`
	Active        bool       `db:"active"`
	CreatedAt     store.Time `db:"created_at"`
}

const columns = `id, name, jwks, jwks_uri, scope_all, organisations, services, active, created_at`

// Scope says in words what the auditor sees.
func (a *Auditor) Scope() string {
	if a.All {
		return "all"
	}
	var parts []string
	if len(a.Organisations) > 0 {
		parts = append(parts, "organisations "+strings.Join(a.Organisations, ","))
	}
	if len(a.Services) > 0 {
		parts = append(parts, "services "+strings.Join(a.Services, ","))
	}
	return strings.Join(parts, "; ")
}

// Scope is the OAuth scope of the API.
const Scope = "audit:read"

// TokenTTL is the life of an auditor's access token.
const TokenTTL = 5 * time.Minute

// API is the auditors' registry, token grant and query endpoint.
type API struct {
	db       *store.DB
	log      *audit.Log
	keys     *keys.Manager
	provider *provider.Provider
	client   *http.Client
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]fetched // jwks_uri → keys
}

type fetched struct {
	set *jose.JSONWebKeySet
	at  time.Time
}

// New returns the API. client fetches auditors' JWKS URIs.
func New(db *store.DB, log *audit.Log, k *keys.Manager, p *provider.Provider, client *http.Client) *API {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	return &API{db: db, log: log, keys: k, provider: p, client: client, now: time.Now, cache: map[string]fetched{}}
}

// NewAuditor is what the operator registers.
type NewAuditor struct {
	Name          string
	JWKS          string // JSON, or
	JWKSURI       string // https URL
	All           bool
	Organisations []string // organisation ids
	Services      []string // service client_ids
}

// InvalidError is a registration mistake, for one line on the command line.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// Add registers an auditor (auditor.registered) and returns it.
func (api *API) Add(ctx context.Context, actor audit.Actor, n NewAuditor) (*Auditor, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, &InvalidError{fmt.Sprintf(format, args...)}) }
	name := strings.TrimSpace(n.Name)
	if name == "" || len(name) > 200 {
		bad("--name: give a name of 1 to 200 characters")
	}
	switch {
	case (n.JWKS == "") == (n.JWKSURI == ""):
		bad("give the auditor's public keys with --jwks FILE or --jwks-uri URL (one of them)")
	case n.JWKS != "":
		if _, err := provider.ParseClientJWKS(n.JWKS); err != nil {
			bad("--jwks: %v", err)
		}
	default:
		u, err := url.Parse(n.JWKSURI)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			bad("--jwks-uri: an https URL is required")
		}
	}
	if n.All == (len(n.Organisations)+len(n.Services) > 0) {
		bad("give the scope: --all, or --organisations and/or --services")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	a := &Auditor{ID: store.NewID("adt"), Name: name, JWKS: n.JWKS, JWKSURI: n.JWKSURI, All: n.All,
		Organisations: n.Organisations, Services: n.Services, Active: true}
	err := api.log.Write(ctx, func(tx *audit.Tx) error {
		a.CreatedAt = store.T(tx.Now())
		for _, id := range a.Organisations {
			var ok int
			if err := tx.Get(&ok, `SELECT COUNT(*) FROM organisations WHERE id = ?`, id); err != nil {
				return err
			}
			if ok != 1 {
				return &InvalidError{fmt.Sprintf("--organisations: %s is not an organisation", id)}
			}
		}
		for _, id := range a.Services {
			var ok int
			if err := tx.Get(&ok, `SELECT COUNT(*) FROM services WHERE id = ?`, id); err != nil {
				return err
			}
			if ok != 1 {
				return &InvalidError{fmt.Sprintf("--services: %s is not a registered service", id)}
			}
		}
		if _, err := tx.Exec(`INSERT INTO auditors (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.ID, a.Name, a.JWKS, a.JWKSURI,
			a.All, a.Organisations, a.Services, a.Active, a.CreatedAt); err != nil {
			return err
		}
		_, err := tx.Append(audit.Event{Type: audit.AuditorRegistered, Actor: actor,
			Detail: map[string]any{"auditor": a.ID, "scope_all": a.All, "organisations": len(a.Organisations), "services": len(a.Services)}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// List returns every auditor.
func (api *API) List(ctx context.Context) ([]Auditor, error) {
	var out []Auditor
	err := api.db.R.SelectContext(ctx, &out, `SELECT `+columns+` FROM auditors ORDER BY name`)
	return out, err
}

// Get returns an active auditor.
func (api *API) Get(ctx context.Context, id string) (*Auditor, error) {
	var a Auditor
	if err := api.db.R.GetContext(ctx, &a, api.db.Rebind(`SELECT `+columns+` FROM auditors WHERE id = ? AND active = ?`), id, true); err != nil {
		return nil, store.NotFound(err, "auditor "+id)
	}
	return &a, nil
}

// keysOf returns an auditor's public keys (fetched from its JWKS URI at
// most every five minutes). An unknown auditor is store.ErrNotFound;
// published keys that are not a usable JWKS refuse the auditor
// (invalid_client); a JWKS URI that does not answer is
// temporarily_unavailable — the auditor did nothing wrong, and neither
// did this server.
func (api *API) keysOf(ctx context.Context, id string) (*jose.JSONWebKeySet, error) {
	a, err := api.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.JWKS != "" {
		return provider.ParseClientJWKS(a.JWKS)
	}
	api.mu.Lock()
	f, ok := api.cache[a.JWKSURI]
	api.mu.Unlock()
	if ok && time.Since(f.at) < 5*time.Minute {
		return f.set, nil
	}
	unavailable := provider.TemporarilyUnavailable("the auditor's JWKS URI does not answer")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.JWKSURI, nil)
	if err != nil {
		return nil, provider.InvalidClient("the auditor's JWKS URI is unusable")
	}
	resp, err := api.client.Do(req)
	if err != nil {
		return nil, unavailable
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		return nil, unavailable
	}
	if resp.StatusCode != http.StatusOK {
		return nil, provider.InvalidClient(fmt.Sprintf("the auditor's JWKS URI answers %s", resp.Status))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, unavailable
	}
	set, err := provider.ParseClientJWKS(string(b))
	if err != nil {
		return nil, provider.InvalidClient("the auditor's JWKS: " + err.Error())
	}
	api.mu.Lock()
	api.cache[a.JWKSURI] = fetched{set: set, at: time.Now()}
	api.mu.Unlock()
	return set, nil
}
