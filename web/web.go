// Package web owns the HTTP side: routes, handlers, middleware (request
// ids, logs, security headers, cross-site request refusal, limits) and page
// rendering. Browser pages and machine APIs are separate muxes with their
// own middleware.
//
// Handlers return an error; one place (fail) turns it into a status and a
// fixed French message for people, and logs the detail with the request
// id. The text of an internal error is never shown.
package web

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"aidants/audit"
	"aidants/auth"
	"aidants/keys"
	"aidants/mandate"
	"aidants/notify"
	"aidants/objection"
	"aidants/org"
	"aidants/provider"
	"aidants/templates"
	"aidants/witness"
)

// Options configures the server.
type Options struct {
	PublicURL string
	Dev       bool
	// OverrideDir replaces embedded templates and assets (see package
	// templates).
	OverrideDir string
	// FormActions are the origins forms may lead to after a redirect (the
	// identity providers' logout pages).
	FormActions []string
	// MetricsToken, when set, is required as a Bearer token on /metrics;
	// otherwise /metrics answers loopback clients that did not come
	// through a proxy.
	MetricsToken string
	// NoPublicMetrics serves no /metrics on the site (it has a listener
	// of its own: MetricsHandler).
	NoPublicMetrics bool
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client.
	TrustedProxies []*net.IPNet
	// PublicStats serves the national statistics, without names, to
	// anyone at /statistiques (otherwise 404).
	PublicStats bool
	// Limits bound what one client may ask (SPEC §11, issue 13).
	Limits   Limits
	Logger   *slog.Logger
	Registry *prometheus.Registry
}

// Deps are the services the handlers call.
type Deps struct {
	Auth     *auth.Service
	Log      *audit.Log
	Dir      *org.Directory
	Mandates *mandate.Service
	Keys     *keys.Manager
	Provider *provider.Provider
	// AuditEvents serves the auditors' query API (nil: not served).
	AuditEvents http.HandlerFunc
	// ServiceName names a public service for people (nil: "un service en
	// ligne").
	ServiceName func(ctx context.Context, id string) string
	// Witnessing says which checkpoint the witnesses cosigned.
	Witnessing *witness.Service
	// Notify queues the messages that pages send (a consent link by
	// email); nil: no email.
	Notify *notify.Notifier
	// Objections keeps the person's objections and the aidants'
	// declarations of error.
	Objections *objection.Service
	// MailWake makes the mail sender look at the outbox now (nil: it
	// looks at its next poll).
	MailWake func()
}

// Server serves the service.
type Server struct {
	opts        Options
	pages       *templates.Set
	auth        *auth.Service
	log         *audit.Log
	dir         *org.Directory
	mandates    *mandate.Service
	keys        *keys.Manager
	provider    *provider.Provider
	auditEvents http.HandlerFunc
	services    func(ctx context.Context, id string) string
	witnessing  *witness.Service
	notify      *notify.Notifier
	objections  *objection.Service
	mailWake    func()

	browser *http.ServeMux
	api     *http.ServeMux
	root    *http.ServeMux
	csp     string
	metrics *metrics
	limits  *limits
	logger  *slog.Logger
}

// New builds the server and parses every template (a broken one stops the
// service here).
func New(opts Options, d Deps) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	pages, err := templates.Parse(opts.OverrideDir, funcs)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts: opts, pages: pages, auth: d.Auth, log: d.Log, dir: d.Dir, mandates: d.Mandates, keys: d.Keys, provider: d.Provider, services: d.ServiceName,
		auditEvents: d.AuditEvents, witnessing: d.Witnessing, notify: d.Notify, objections: d.Objections, mailWake: d.MailWake,
		browser: http.NewServeMux(), api: http.NewServeMux(), root: http.NewServeMux(),
		logger: opts.Logger,
	}
	s.metrics = newMetrics(opts.Registry, d.Log, d.Witnessing, d.Auth)
	s.limits = newLimits(opts.Limits)
	s.csp = contentSecurityPolicy(opts.FormActions)
	s.routes()
	return s, nil
}

// Run does the server's background work until ctx ends: the sweep of
// expired records of used requests, the journal of throttled requests.
func (s *Server) Run(ctx context.Context) {
	go s.auth.RunSweeper(ctx)
	if len(s.limits.all) > 0 {
		w := s.opts.Limits.Window
		if w <= 0 {
			w = time.Minute
		}
		s.journalThrottling(ctx, w)
	}
}

// Mount adds a handler beside the application's (the development
// providers, for one), with the same security headers. It must be called
// before serving.
func (s *Server) Mount(pattern string, h http.Handler) {
	s.root.Handle(pattern, s.common(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		h.ServeHTTP(w, r)
	})))
}

// MetricsHandler serves /metrics alone, for a listener of its own.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.common(s.apiHandler(func(w http.ResponseWriter, r *http.Request) error { return s.metricsFor(w, r, true) })))
	return mux
}

// Handler is the whole site.
func (s *Server) Handler() http.Handler { return s.root }

func (s *Server) routes() {
	b := s.browser
	b.Handle("GET /{$}", s.page(s.home))
	b.Handle("GET /connexion", s.page(s.connexion))
	b.Handle("GET /connexion/aidant", s.limited(s.limits.signIn, false, s.page(s.aidantLogin)))
	b.Handle("GET /connexion/aidant/reauthentification", s.page(s.aidantStepUp))
	b.Handle("GET /connexion/aidant/retour", s.limited(s.limits.signIn, false, s.page(s.aidantCallback)))
	b.Handle("POST /deconnexion", s.page(s.logout))
	b.Handle("GET /deconnecte", s.page(s.loggedOut))
	b.Handle("GET /tableau-de-bord", s.page(s.aidantOnly(s.dashboard)))
	b.Handle("GET /journal-public", s.page(s.publicJournal))

	// Mandates (SPEC §5): the aidant's side.
	b.Handle("GET /mandats", s.page(s.aidantOnly(s.mandatesList)))
	b.Handle("GET /mandats/nouveau", s.page(s.aidantOnly(s.newMandateForm)))
	b.Handle("POST /mandats/nouveau", s.page(s.aidantOnly(s.newMandate)))
	b.Handle("GET /brouillons/{id}", s.page(s.aidantOnly(s.draft)))
	b.Handle("POST /brouillons/{id}/franceconnect", s.page(s.aidantOnly(s.draftFranceConnect)))
	b.Handle("POST /brouillons/{id}/signer", s.page(s.aidantOnly(s.signDraft)))
	b.Handle("POST /brouillons/{id}/envoyer-lien", s.page(s.aidantOnly(s.sendLink)))
	b.Handle("GET /mandats/{id}", s.page(s.aidantOnly(s.mandatePage)))
	b.Handle("GET /mandats/{id}/attestation", s.page(s.aidantOnly(s.attestation("attestation"))))
	b.Handle("GET /mandats/{id}/attestation-revocation", s.page(s.aidantOnly(s.attestation("attestation-revocation"))))
	b.Handle("GET /mandats/{id}/mandat.jwt", s.page(s.aidantOnly(s.mandateJWT)))
	b.Handle("GET /mandats/{id}/retirer", s.page(s.aidantOnly(s.withdrawConfirm)))
	b.Handle("GET /mandats/{id}/actions/{index}/erreur", s.page(s.aidantOnly(s.declareError)))
	b.Handle("POST /mandats/{id}/actions/{index}/erreur", s.page(s.aidantOnly(s.declareError)))
	b.Handle("POST /mandats/{id}/revoquer", s.page(s.aidantOnly(s.revokeMandate)))
	b.Handle("POST /mandats/{id}/renouveler", s.page(s.aidantOnly(s.renewMandate)))
	// Anyone may check a signed mandate.
	b.Handle("GET /mandats/verify", s.limited(s.limits.verify, false, s.page(s.verifyMandate)))
	b.Handle("POST /mandats/verify", s.limited(s.limits.verify, false, s.page(s.verifyMandate)))
	// FranceConnect's own callback, and the person's remote consent.
	b.Handle("GET /franceconnect/retour", s.limited(s.limits.signIn, false, s.page(s.franceConnectCallback)))
	b.Handle("GET /consentement", s.limited(s.limits.consent, false, s.page(s.consentStart)))
	b.Handle("POST /consentement/franceconnect", s.page(s.consentFranceConnect))
	b.Handle("GET /consentement/recapitulatif", s.page(s.consentRecap))
	b.Handle("POST /consentement/accepter", s.page(s.consentDecide(true)))
	b.Handle("POST /consentement/refuser", s.page(s.consentDecide(false)))
	// The person's own space (SPEC §5.6).
	b.Handle("GET /mon-espace", s.page(s.usagerOnly(s.space)))
	b.Handle("POST /mon-espace/connexion", s.limited(s.limits.signIn, false, s.page(s.usagerLogin)))
	b.Handle("POST /mon-espace/deconnexion", s.page(s.usagerLogout))
	b.Handle("GET /mon-espace/deconnecte", s.page(s.usagerLoggedOut))
	b.Handle("GET /mon-espace/mandats/{id}/revoquer", s.page(s.usagerOnly(s.usagerRevokeConfirm)))
	b.Handle("POST /mon-espace/mandats/{id}/revoquer", s.page(s.usagerOnly(s.usagerRevoke)))
	b.Handle("GET /mon-espace/actions/{index}", s.page(s.usagerOnly(s.usagerReceiptPage)))
	b.Handle("GET /mon-espace/objection/{index}", s.page(s.usagerOnly(s.usagerObjection)))
	b.Handle("POST /mon-espace/objection/{index}", s.page(s.usagerOnly(s.usagerObjection)))
	b.Handle("POST /mon-espace/courriels", s.page(s.usagerOnly(s.usagerActionMails)))
	b.Handle("GET /mon-espace/recus/{index}", s.page(s.usagerOnly(s.usagerReceipt)))
	b.Handle("GET /mon-espace/donnees.json", s.page(s.usagerOnly(s.exportJSON)))
	b.Handle("GET /mon-espace/actions.csv", s.page(s.usagerOnly(s.exportCSV)))
	// Acting on behalf (SPEC §7): the browser side of the provider.
	b.Handle("GET /oidc/authorize", s.page(s.oidcAuthorize))
	b.Handle("GET /agir", s.page(s.aidantOnly(s.act)))
	b.Handle("POST /agir", s.page(s.aidantOnly(s.actChoose)))
	b.Handle("POST /agir/annuler", s.page(s.aidantOnly(s.actCancel)))
	b.Handle("GET /oidc/logout", s.page(s.oidcLogout))
	b.Handle("GET "+provider.ServiceDocumentationPath, s.page(s.servicesDocumentation))
	b.Handle("GET /structure", s.page(s.referentOnly(s.structure)))
	b.Handle("POST /structure/aidants", s.page(s.referentOnly(s.structureAddAidant)))
	b.Handle("GET /structure/aidants/{id}/desactiver", s.page(s.referentOnly(s.structureDisableConfirm)))
	b.Handle("POST /structure/aidants/{id}/desactiver", s.page(s.referentOnly(s.structureSetActive(false))))
	b.Handle("POST /structure/aidants/{id}/reactiver", s.page(s.referentOnly(s.structureSetActive(true))))
	b.Handle("POST /structure/demarches", s.page(s.referentOnly(s.structureDemarches)))
	b.Handle("GET /structure/journal", s.page(s.referentOnly(s.structureJournal)))
	b.Handle("GET /structure/objections", s.page(s.referentOnly(s.structureObjections)))
	b.Handle("GET /structure/objections/{id}", s.page(s.referentOnly(s.structureObjection)))
	b.Handle("POST /structure/objections/{id}", s.page(s.referentOnly(s.structureObjection)))
	b.Handle("GET /structure/journal.csv", s.page(s.referentOnly(s.structureJournalCSV)))
	b.Handle("GET /structure/statistiques", s.page(s.referentOnly(s.structureStats)))
	b.Handle("GET /structure/statistiques.csv", s.page(s.referentOnly(s.structureStatsCSV)))
	b.Handle("GET /statistiques", s.page(s.publicStats))
	b.Handle("GET /statistiques.csv", s.page(s.publicStatsCSV))
	b.Handle("GET /structures", s.page(s.aidantOnly(s.structures)))
	b.Handle("POST /structures", s.page(s.aidantOnly(s.structuresChoose)))
	b.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(s.opts.OverrideDir)))
	b.Handle("/", s.page(func(w http.ResponseWriter, r *http.Request) error { return errNotFound }))

	a := s.api
	a.Handle("GET /healthz", s.apiHandler(s.healthz))
	a.Handle("GET /readyz", s.apiHandler(s.readyz))
	if !s.opts.NoPublicMetrics {
		a.Handle("GET /metrics", s.apiHandler(s.serveMetrics))
	}
	a.Handle("GET /oidc/jwks", s.apiHandler(s.jwks))
	a.Handle("GET /audit/checkpoint", s.apiHandler(s.auditCheckpoint))
	a.Handle("GET /audit/checkpoint/latest", s.apiHandler(s.auditLatestCheckpoint))
	a.Handle("GET /audit/tile/{path...}", s.apiHandler(s.auditTile))
	// Each origin of the journal as a log of its own (tlog-tiles prefix
	// /audit/origins/<no>/): an earlier origin's tiles never change.
	a.Handle("GET /audit/origins/{no}/checkpoint", s.apiHandler(s.auditOriginCheckpoint))
	a.Handle("GET /audit/origins/{no}/tile/{path...}", s.apiHandler(s.auditTile))
	a.Handle("GET /audit/key", s.apiHandler(s.auditKey))
	a.Handle("GET /audit/proof/inclusion", s.apiHandler(s.auditInclusion))
	a.Handle("GET /audit/proof/consistency", s.apiHandler(s.auditConsistency))

	if s.auditEvents != nil {
		a.Handle("GET /api/audit/events", s.limited(s.limits.auditor, true, s.auditEvents))
	}
	if s.provider != nil {
		ph := s.provider.Handler()
		for _, p := range []string{"GET /.well-known/openid-configuration", "GET /oidc/userinfo", "POST /oidc/userinfo"} {
			a.Handle(p, ph)
		}
		a.Handle("POST /oidc/token", s.tokenLimited(ph))
	}
	browser := s.common(s.browserMiddleware(b))
	api := s.common(s.apiMiddleware(a))
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/audit/", "/api/", "/oidc/jwks", "/oidc/token", "/oidc/userinfo", "/.well-known/"} {
		s.root.Handle(p, api)
	}
	s.root.Handle("/", browser)
}

// abs returns the public URL of a local path.
func (s *Server) abs(path string) string { return strings.TrimSuffix(s.opts.PublicURL, "/") + path }

func contentSecurityPolicy(formActions []string) string {
	fa := []string{"'self'"}
	for _, a := range formActions {
		if u, err := url.Parse(a); err == nil && u.Host != "" {
			fa = append(fa, u.Scheme+"://"+u.Host)
		}
	}
	return "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; " +
		"base-uri 'none'; frame-ancestors 'none'; form-action " + strings.Join(fa, " ")
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	sessionEndedKey
	clientKey
)

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// now is the server's clock (the auth service's, so tests can move both).
func (s *Server) now() time.Time { return s.auth.Now() }
