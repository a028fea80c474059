package web

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"aidants/audit"
	"aidants/auth"
	"aidants/witness"
)

// apiError is an error of a machine interface: a status and a short
// English message for the developer calling it.
type apiError struct {
	Status int
	Msg    string
}

func (e *apiError) Error() string { return e.Msg }

func (s *Server) failAPI(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	var br *audit.ErrBadRange
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &br):
		ae = &apiError{http.StatusBadRequest, br.Msg}
	case errors.Is(err, audit.ErrEmpty):
		ae = &apiError{http.StatusNotFound, "the log is empty"}
	case errors.Is(err, audit.ErrUnavailable):
		w.Header().Set("Retry-After", "30")
		ae = &apiError{http.StatusServiceUnavailable, "the service cannot write for now; try again later"}
	default:
		s.logger.Error("api request failed", "request_id", requestID(r.Context()), "path", r.URL.Path, "err", err.Error())
		ae = &apiError{http.StatusInternalServerError, "internal error, request id " + requestID(r.Context())}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.Status)
	json.NewEncoder(w).Encode(map[string]string{"error": ae.Msg})
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// healthz says the process lives.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := w.Write([]byte("ok\n"))
	return err
}

// readyz says whether the instance can serve: the database answers, the
// journal's writer committed since its last failure (or has not failed),
// and the journal is not refused (a rollback found at start, a damaged
// database).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	unready := func(why string) error {
		w.Header().Set("Retry-After", "10")
		return &apiError{http.StatusServiceUnavailable, why}
	}
	if err := s.log.DB().R.PingContext(r.Context()); err != nil {
		return unready("the database does not answer")
	}
	if err := s.log.Refused(); err != nil {
		return unready("the journal takes no writes: " + err.Error())
	}
	if err := s.log.Health(); err != nil {
		return unready("the journal's writer cannot commit: " + err.Error())
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := w.Write([]byte("ready\n"))
	return err
}

// serveMetrics answers a Bearer token when one is configured, else
// clients on loopback that did not come through a proxy: behind a reverse
// proxy on the same host, every request comes from loopback.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	return s.metricsFor(w, r, false)
}

// metricsFor serves the metrics; internal tells a listener of their own,
// where only the token, if any, is asked for.
func (s *Server) metricsFor(w http.ResponseWriter, r *http.Request, internal bool) error {
	if tok := s.opts.MetricsToken; tok != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			return &apiError{http.StatusUnauthorized, "metrics need a bearer token"}
		}
	} else if c := clientFrom(r.Context()); !internal && (c.proxied || !net.ParseIP(c.addr).IsLoopback()) {
		return &apiError{http.StatusForbidden, "metrics are served to loopback clients only, not through a proxy (set server.metrics_token or server.metrics_listen)"}
	}
	promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	return nil
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	refusals *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, log *audit.Log, ws *witness.Service, a *auth.Service) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aidants_http_requests_total", Help: "HTTP requests by route and status."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aidants_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"route"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aidants_signin_refusals_total",
			Help: "Sign-ins refused at the providers' callbacks, by provider and reason."}, []string{"provider", "reason"}),
	}
	st := log.Stats()
	db := log.DB()
	reg.MustRegister(m.requests, m.duration, m.refusals,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aidants_sqlite_checkpoint_age_seconds",
			Help: "Time since the whole SQLite WAL was last copied back into the database (0 on PostgreSQL)."},
			func() float64 { return db.CheckpointAge().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aidants_sqlite_wal_bytes", Help: "Size of the SQLite write-ahead log (0 on PostgreSQL)."},
			func() float64 { return float64(db.WALSize()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_audit_batches_total", Help: "Transactions committed by the audit writer."}, func() float64 { return float64(st.Batches.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_audit_units_total", Help: "Units of work run by the audit writer."}, func() float64 { return float64(st.Units.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_audit_units_failed_total", Help: "Units of work that failed."}, func() float64 { return float64(st.Failed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_audit_events_total", Help: "Events appended to the audit log."}, func() float64 { return float64(st.Events.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_audit_commit_seconds_total", Help: "Time the audit writer spent committing (fsync included)."}, func() float64 { return float64(st.CommitNanos.Load()) / 1e9 }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_audit_batch_seconds_total", Help: "Time the audit writer spent running units and appending events."}, func() float64 {
			return float64(st.UnitNanos.Load()+st.AppendNanos.Load()) / 1e9
		}),
	)
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "aidants_audit_batch_units", Help: "Units of work committed together by the audit writer.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}})
	commit := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "aidants_audit_commit_duration_seconds", Help: "Time of each commit of the audit writer (fsync included).",
		Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}})
	log.Observe(func(units int, d time.Duration) {
		batch.Observe(float64(units))
		commit.Observe(d.Seconds())
	})
	reg.MustRegister(batch, commit,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aidants_audit_writer_healthy", Help: "1 when the audit writer's last batch committed (or none failed), 0 while it cannot."},
			func() float64 { return boolGauge(log.Health() == nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aidants_audit_refused", Help: "1 when the journal takes no writes (a rollback found at start, a damaged database)."},
			func() float64 { return boolGauge(log.Refused() != nil) }),
		collectors.NewDBStatsCollector(log.DB().R.DB, "readers"),
	)
	if w := log.DB().W.DB; w != log.DB().R.DB {
		reg.MustRegister(collectors.NewDBStatsCollector(w, "writer"))
	}
	if ws != nil {
		ws.Register(reg)
	}
	if a != nil {
		a.Register(reg)
	}
	return m
}

// signInRefused counts a refused sign-in by its reason: the account's
// (auth.RefusedError), no second factor, a callback that is not valid, an
// answer that does not verify, or the person cancelled.
func (m *metrics) signInRefused(provider auth.Provider, err error) {
	var refused *auth.RefusedError
	reason := "other"
	switch {
	case errors.As(err, &refused):
		reason = refused.Reason
	case errors.Is(err, auth.ErrMFARequired):
		reason = "mfa_required"
	case errors.Is(err, auth.ErrCancelled):
		reason = "cancelled"
	case errors.Is(err, auth.ErrBadCallback):
		reason = "bad_callback"
	case errors.Is(err, auth.ErrBadToken):
		reason = "bad_token"
	}
	m.refusals.WithLabelValues(string(provider), reason).Inc()
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// auditCheckpoint serves the newest checkpoint that reached the witness
// quorum, with its cosignatures (C2SP tlog-checkpoint and
// tlog-cosignature), or the newest signed one when there are no witnesses.
func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request) error {
	if s.witnessing == nil {
		return s.auditLatestCheckpoint(w, r)
	}
	served, err := s.witnessing.Served(r.Context())
	if errors.Is(err, witness.ErrNotYetWitnessed) {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(s.witnessing.Config().Interval.Seconds()))))
		return &apiError{http.StatusServiceUnavailable, "no checkpoint has been cosigned by the witness quorum yet; the newest signed one is at /audit/checkpoint/latest"}
	}
	if err != nil {
		return err
	}
	return writeNote(w, served.Note)
}

// auditLatestCheckpoint serves the newest signed checkpoint, witnessed or
// not.
func (s *Server) auditLatestCheckpoint(w http.ResponseWriter, r *http.Request) error {
	cp, err := s.log.Latest(r.Context())
	if err != nil {
		return err
	}
	return writeNote(w, cp.Note)
}

func writeNote(w http.ResponseWriter, note []byte) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, err := w.Write(note)
	return err
}

// auditTile serves the log as C2SP tlog-tiles: a full tile never changes
// and is cacheable for ever; a partial one is replaced as the log grows.
// Under /audit/origins/<no>/, an earlier origin's tiles, all final.
func (s *Server) auditTile(w http.ResponseWriter, r *http.Request) error {
	t, err := audit.ParseTilePath("tile/" + r.PathValue("path"))
	if err != nil {
		return &apiError{http.StatusNotFound, "no such tile"}
	}
	var data []byte
	final := t.W == audit.TileWidth
	if no := r.PathValue("no"); no != "" {
		n, perr := strconv.ParseInt(no, 10, 64)
		if perr != nil || n < 1 || strconv.FormatInt(n, 10) != no {
			return &apiError{http.StatusNotFound, "no such origin"}
		}
		data, err = s.log.TileOf(r.Context(), n, t)
		final = final || n != s.log.OriginNo()
	} else {
		data, err = s.log.Tile(r.Context(), t)
	}
	if errors.Is(err, audit.ErrNoTile) || errors.Is(err, audit.ErrEmpty) {
		return &apiError{http.StatusNotFound, "no such tile"}
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if final {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=2")
	}
	_, err = w.Write(data)
	return err
}

// auditOriginCheckpoint serves an origin's newest witnessed checkpoint (or
// newest signed one): for the tiles under /audit/origins/<no>/.
func (s *Server) auditOriginCheckpoint(w http.ResponseWriter, r *http.Request) error {
	no := r.PathValue("no")
	n, err := strconv.ParseInt(no, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != no {
		return &apiError{http.StatusNotFound, "no such origin"}
	}
	note, err := s.log.OriginCheckpoint(r.Context(), n)
	if errors.Is(err, audit.ErrNoTile) {
		return &apiError{http.StatusNotFound, "no such origin"}
	}
	if err != nil {
		return err
	}
	return writeNote(w, note)
}

// auditKey serves the note verifier key of the log.
func (s *Server) auditKey(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err := w.Write([]byte(s.log.VerifierKey() + "\n"))
	return err
}

func (s *Server) auditInclusion(w http.ResponseWriter, r *http.Request) error {
	index, err := intParam(r, "index")
	if err != nil {
		return err
	}
	size, err := intParam(r, "size")
	if err != nil {
		return err
	}
	p, err := s.log.Inclusion(r.Context(), index, size)
	if err != nil {
		return err
	}
	return writeJSON(w, p)
}

func (s *Server) auditConsistency(w http.ResponseWriter, r *http.Request) error {
	old, err := intParam(r, "old")
	if err != nil {
		return err
	}
	size, err := intParam(r, "size")
	if err != nil {
		return err
	}
	p, err := s.log.Consistency(r.Context(), old, size)
	if err != nil {
		return err
	}
	return writeJSON(w, p)
}

// intParam reads a required non-negative decimal query parameter.
func intParam(r *http.Request, name string) (int64, error) {
	vs, ok := r.URL.Query()[name]
	if !ok || len(vs) != 1 || vs[0] == "" {
		return 0, &apiError{http.StatusBadRequest, name + " is required, once"}
	}
	v := strings.TrimSpace(vs[0])
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || v != vs[0] || strings.HasPrefix(v, "+") {
		return 0, &apiError{http.StatusBadRequest, name + " must be a decimal integer"}
	}
	if n < 0 {
		return 0, &apiError{http.StatusBadRequest, name + " must not be negative"}
	}
	return n, nil
}

type journalPage struct {
	Page
	Checkpoint string
	Size       int64
	Key        string
	Origin     string
	// Witnessed is the newest checkpoint the witnesses cosigned.
	Witnessed     bool
	WitnessedAge  time.Duration
	Pending       int64    // newer events waiting for the witnesses
	Witnesses     []string // the configured witnesses
	CosignedBy    []string
	Quorum        int
	NotYetWitness bool
	PublicURL     string
}

// publicJournal explains, to anyone, how to check the journal, and shows
// its newest witnessed checkpoint, by whom and how long ago.
func (s *Server) publicJournal(w http.ResponseWriter, r *http.Request) error {
	p := &journalPage{Page: s.base(r), Key: s.log.VerifierKey(), Origin: s.log.Origin(), PublicURL: s.opts.PublicURL}
	if s.witnessing != nil {
		p.Witnesses, p.Quorum = s.witnessing.Names(), s.witnessing.Config().Quorum
	}
	if s.witnessing != nil && p.Quorum > 0 {
		served, err := s.witnessing.Served(r.Context())
		switch {
		case err == nil:
			p.Checkpoint, p.Size, p.Witnessed = string(served.Note), served.Size, true
			p.WitnessedAge = s.now().Sub(served.At)
			p.Pending = served.Latest - served.Size
			for _, c := range served.Witnesses {
				p.CosignedBy = append(p.CosignedBy, witness.Label(c.Name))
			}
		case errors.Is(err, witness.ErrNotYetWitnessed):
			p.NotYetWitness = true
		case !errors.Is(err, audit.ErrEmpty):
			return err
		}
	} else {
		cp, err := s.log.Latest(r.Context())
		switch {
		case err == nil:
			p.Checkpoint, p.Size = string(cp.Note), cp.Size
		case !errors.Is(err, audit.ErrEmpty):
			return err
		}
	}
	s.render(w, r, http.StatusOK, "journal-public", p)
	return nil
}

// jwks publishes every signing key in use (mandates, ID and access
// tokens), old keys included until what they signed has expired.
func (s *Server) jwks(w http.ResponseWriter, r *http.Request) error {
	set, err := s.keys.JWKS(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	return json.NewEncoder(w).Encode(set)
}
