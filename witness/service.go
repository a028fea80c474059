package witness

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/audit"
	"aidants/store"
)

// Endpoint is one witness of the log: where to reach it and its key.
type Endpoint struct {
	URL      string
	Verifier *Verifier
	// Dev marks the built-in development witness, named as such on pages.
	Dev bool
}

// Config configures a Service.
type Config struct {
	Witnesses []Endpoint
	// Quorum is how many cosignatures a checkpoint needs before it is
	// served as witnessed (0: no witnesses, the newest signed checkpoint
	// is served).
	Quorum int
	// Interval is the most often checkpoints are sent.
	Interval time.Duration
	// StateFile keeps the newest witnessed checkpoint outside the database.
	StateFile  string
	HTTPClient *http.Client
	Logger     *slog.Logger
	// OnWitnessed, when set, is told of each checkpoint that reached the
	// quorum, once stored (the benchmark measures delays with it).
	OnWitnessed func(size int64, at time.Time)
}

// Service sends the log's checkpoints to its witnesses, outside the write
// path, and keeps their cosignatures (SPEC §6.1): at most once per
// interval it takes the newest signed checkpoint, sends it with a
// consistency proof from the size each witness holds, and once Quorum of
// them cosigned it, writes it to the state file and stores it in the
// database. Where several instances share a PostgreSQL database, one of
// them at a time (an advisory lock) submits; the others copy the newest
// witnessed checkpoint into their own state file.
type Service struct {
	log    *audit.Log
	db     *store.DB
	cfg    Config
	logV   note.Verifier
	vs     []*Verifier
	logger *slog.Logger

	mu    sync.Mutex
	known map[string]int64 // the size each witness holds, as last learnt
	state int64            // size of the checkpoint in the state file

	leader *sql.Conn // PostgreSQL: the connection holding the lock

	keptAt atomic.Int64 // Unix ms of the last keep, for the metrics
	stats  Stats
}

// Stats counts what the service did since the process started.
type Stats struct {
	Rounds    atomic.Int64
	Witnessed atomic.Int64 // checkpoints that reached the quorum
	// Per witness, in Config order.
	Cosigned, Refused, Failed []atomic.Int64
}

// advisoryLock is the PostgreSQL lock of the instance that submits.
const advisoryLock = 7242630011

// New builds the service of log.
func New(log *audit.Log, cfg Config) (*Service, error) {
	logV, err := note.NewVerifier(log.VerifierKey())
	if err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Quorum > len(cfg.Witnesses) {
		return nil, fmt.Errorf("witness: quorum %d above the %d witnesses", cfg.Quorum, len(cfg.Witnesses))
	}
	s := &Service{log: log, db: log.DB(), cfg: cfg, logV: logV, logger: cfg.Logger, known: map[string]int64{}}
	for _, w := range cfg.Witnesses {
		s.vs = append(s.vs, w.Verifier)
	}
	n := len(cfg.Witnesses)
	s.stats.Cosigned, s.stats.Refused, s.stats.Failed = make([]atomic.Int64, n), make([]atomic.Int64, n), make([]atomic.Int64, n)
	if kept, err := audit.ReadStateFile(cfg.StateFile); err == nil && kept != nil {
		if cp, err := audit.ParseCheckpoint(kept, log.VerifierKey()); err == nil {
			s.state = cp.Size
		}
	}
	return s, nil
}

// Stats returns the service's counters.
func (s *Service) Stats() *Stats { return &s.stats }

// Config returns the service's configuration.
func (s *Service) Config() Config { return s.cfg }

// Run sends checkpoints until ctx ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	defer s.release()
	for {
		if err := s.Round(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("witnessing round failed", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round does one round: the newest signed checkpoint to the witnesses,
// or, for an instance that is not the one submitting, the newest
// witnessed checkpoint to its state file.
func (s *Service) Round(ctx context.Context) error {
	s.stats.Rounds.Add(1)
	if err := s.log.Refused(); err != nil {
		return nil // a refused log is not witnessed: its operator must act
	}
	cp, err := s.log.Latest(ctx)
	if errors.Is(err, audit.ErrEmpty) {
		return nil
	}
	if err != nil {
		return err
	}
	if s.cfg.Quorum == 0 {
		// No witnesses, nothing cosigned: nothing outside the database
		// vouches for the journal, and no state file is kept (a restored
		// backup is taken as it is).
		return nil
	}
	lead, err := s.lead(ctx)
	if err != nil {
		return err
	}
	if !lead {
		return s.follow(ctx)
	}
	w, err := s.log.Witnessed(ctx)
	if err != nil && !errors.Is(err, audit.ErrNotWitnessed) {
		return err
	}
	if err == nil && w.Size >= cp.Size {
		// Already witnessed, unless the quorum or the witnesses changed
		// since: then the same checkpoint is sent again.
		if _, by, cerr := Cosigned(w.Note, s.logV, s.vs); cerr == nil && len(by) >= s.cfg.Quorum {
			return s.keep(w.Size, w.Note)
		}
	}
	return s.submit(ctx, cp)
}

// submit sends cp to every witness at once and keeps it if enough cosign.
func (s *Service) submit(ctx context.Context, cp *audit.Checkpoint) error {
	lines := make([][]byte, len(s.cfg.Witnesses))
	var wg sync.WaitGroup
	for i, w := range s.cfg.Witnesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cosig, err := s.send(ctx, w, cp)
			if err == nil {
				// Keep only this witness's own cosignature, verified: a
				// witness that answers anything else is one refusal, not
				// a reason to drop the others' cosignatures.
				cosig, err = ownCosignature(cp.Note, cosig, s.logV, w.Verifier)
			}
			switch {
			case err == nil:
				lines[i] = cosig
				s.stats.Cosigned[i].Add(1)
			case IsRefusal(err):
				s.stats.Refused[i].Add(1)
				s.logger.Error("a witness refused the log's checkpoint", "witness", w.Verifier.Name(), "size", cp.Size, "err", err.Error())
			default:
				s.stats.Failed[i].Add(1)
				s.logger.Warn("a witness could not be reached", "witness", w.Verifier.Name(), "size", cp.Size, "err", err.Error())
			}
		}()
	}
	wg.Wait()
	cosigned := bytes.Clone(cp.Note)
	for _, l := range lines {
		cosigned = append(cosigned, l...)
	}
	_, by, err := Cosigned(cosigned, s.logV, s.vs)
	if err != nil {
		return fmt.Errorf("witness: cosignatures of %d: %w", cp.Size, err)
	}
	if len(by) < s.cfg.Quorum {
		return fmt.Errorf("witness: checkpoint %d cosigned by %d witnesses of the %d needed", cp.Size, len(by), s.cfg.Quorum)
	}
	if err := s.keep(cp.Size, cosigned); err != nil {
		return err
	}
	if err := s.log.StoreWitnessed(ctx, cosigned); err != nil {
		return err
	}
	s.stats.Witnessed.Add(1)
	if s.cfg.OnWitnessed != nil {
		s.cfg.OnWitnessed(cp.Size, time.Now())
	}
	return nil
}

// ownCosignature returns the one line of answer by which w cosigned the
// signed checkpoint msg, verified, or a refusal.
func ownCosignature(msg, answer []byte, logV note.Verifier, w *Verifier) ([]byte, error) {
	_, by, err := Cosigned(append(bytes.Clone(msg), answer...), logV, []*Verifier{w})
	if err != nil || len(by) != 1 {
		return nil, &RefusedError{Kind: ErrBadSignature, Message: fmt.Sprintf("the answer holds no valid cosignature of %s (%v)", w.Name(), err)}
	}
	for _, l := range strings.SplitAfter(string(answer), "\n") {
		if strings.HasPrefix(l, "— "+w.Name()+" ") {
			if _, b, err := Cosigned(append(bytes.Clone(msg), l...), logV, []*Verifier{w}); err == nil && len(b) == 1 {
				return []byte(l), nil
			}
		}
	}
	return nil, &RefusedError{Kind: ErrBadSignature, Message: "no cosignature line of " + w.Name()}
}

// send submits cp to one witness, from the size it holds.
func (s *Service) send(ctx context.Context, w Endpoint, cp *audit.Checkpoint) ([]byte, error) {
	s.mu.Lock()
	old, ok := s.known[w.URL]
	s.mu.Unlock()
	if !ok {
		old = s.stateSize()
	}
	for try := 0; ; try++ {
		if old > cp.Size {
			return nil, &RefusedError{Kind: ErrInconsistent, Message: fmt.Sprintf("the witness holds %d events, more than the log's %d: the log was rolled back", old, cp.Size)}
		}
		var proof tlog.TreeProof
		if old > 0 && old < cp.Size {
			p, err := s.log.Consistency(ctx, old, cp.Size)
			if err != nil {
				return nil, err
			}
			proof = p.Hashes
		}
		cosig, err := AddCheckpoint(ctx, s.cfg.HTTPClient, w.URL, old, proof, cp.Note)
		var ce *ConflictError
		if errors.As(err, &ce) && try == 0 {
			old = ce.Size
			continue
		}
		if err == nil {
			s.mu.Lock()
			s.known[w.URL] = cp.Size
			s.mu.Unlock()
		}
		return cosig, err
	}
}

func (s *Service) stateSize() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// keep writes a newer checkpoint to the state file.
func (s *Service) keep(size int64, msg []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size <= s.state && s.state > 0 {
		return nil
	}
	// Another process (the command line, another instance) may have kept
	// a newer one of the same origin: never go backwards.
	if kept, err := audit.ReadStateFile(s.cfg.StateFile); err == nil && kept != nil {
		if cp, err := audit.ParseCheckpoint(kept, s.log.VerifierKey()); err == nil && cp.Size > size {
			s.state = cp.Size
			return nil
		}
	}
	if s.cfg.StateFile != "" {
		if err := audit.WriteStateFile(s.cfg.StateFile, msg); err != nil {
			return err
		}
	}
	s.state = size
	s.keptAt.Store(time.Now().UnixMilli())
	return nil
}

// follow copies the newest witnessed checkpoint, once its cosignatures
// verify, into this instance's state file.
func (s *Service) follow(ctx context.Context) error {
	w, err := s.log.Witnessed(ctx)
	if errors.Is(err, audit.ErrNotWitnessed) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, by, err := Cosigned(w.Note, s.logV, s.vs); err != nil || len(by) < s.cfg.Quorum {
		return fmt.Errorf("witness: the stored witnessed checkpoint %d lacks its cosignatures: %v", w.Size, err)
	}
	return s.keep(w.Size, w.Note)
}

// lead tells whether this instance submits: always on SQLite (one
// writer), on PostgreSQL the holder of the advisory lock.
func (s *Service) lead(ctx context.Context) (bool, error) {
	if s.db.Dialect != store.Postgres {
		return true, nil
	}
	if s.leader != nil {
		if err := s.leader.PingContext(ctx); err == nil {
			return true, nil
		}
		s.leader.Close()
		s.leader = nil
	}
	conn, err := s.db.R.Conn(ctx)
	if err != nil {
		return false, err
	}
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, advisoryLock).Scan(&got); err != nil || !got {
		conn.Close()
		return false, err
	}
	s.leader = conn
	return true, nil
}

func (s *Service) release() {
	if s.leader != nil {
		s.leader.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, advisoryLock)
		s.leader.Close()
		s.leader = nil
	}
}

// Probe asks every witness, at start, which size of the log it holds, by
// re-submitting the checkpoint kept in the state file (or, without one,
// the newest signed checkpoint from size 0): a witness that holds more
// events than the database, or another history at that size, means the
// database was rolled back; it returns an *audit.RollbackError. Witnesses
// that cannot be reached are logged and skipped: the state file check
// still holds.
func (s *Service) Probe(ctx context.Context) error {
	if len(s.cfg.Witnesses) == 0 {
		return nil
	}
	head, err := s.log.Head(ctx)
	if err != nil {
		return err
	}
	probe, old := head.Note, int64(0)
	if kept, err := audit.ReadStateFile(s.cfg.StateFile); err != nil {
		return err
	} else if kept != nil {
		if cp, err := audit.ParseCheckpoint(kept, s.log.VerifierKey()); err == nil {
			probe, old = logSignatureOnly(kept, s.logV.Name()), cp.Size
		}
	}
	if probe == nil {
		return nil
	}
	for _, w := range s.cfg.Witnesses {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := AddCheckpoint(pctx, s.cfg.HTTPClient, w.URL, old, nil, probe)
		cancel()
		var ce *ConflictError
		switch {
		case err == nil:
			s.mu.Lock()
			s.known[w.URL] = max(old, head.Size)
			if old > 0 {
				s.known[w.URL] = old
			}
			s.mu.Unlock()
		case errors.As(err, &ce):
			if ce.Size > head.Size {
				return &audit.RollbackError{Msg: fmt.Sprintf("the witness %s holds %d events of the journal %q but the database only %d: an older backup was restored or the database replaced. Nothing will be written: restore a backup that reaches %d events, or continue the journal under a new origin with `aidants audit new-origin` (docs/WITNESSES.md)",
					w.Verifier.Name(), ce.Size, s.logV.Name(), head.Size, ce.Size)}
			}
			// The witness holds fewer events than the database: the
			// database must extend what it holds, or it is another
			// history (a restored backup written on past it).
			if err := s.probeExtends(ctx, w, ce.Size, head); err != nil {
				return err
			}
		case errors.Is(err, ErrInconsistent):
			return &audit.RollbackError{Msg: fmt.Sprintf("the witness %s holds another history of the journal %q at %d events than the one kept in %s: the database or the state file was replaced. Nothing will be written (docs/WITNESSES.md)",
				w.Verifier.Name(), s.logV.Name(), old, s.cfg.StateFile)}
		case IsRefusal(err):
			s.logger.Error("a witness refuses the log at start", "witness", w.Verifier.Name(), "err", err.Error())
		default:
			s.logger.Warn("a witness could not be reached at start", "witness", w.Verifier.Name(), "err", err.Error())
		}
	}
	return nil
}

// probeExtends sends the database's head to a witness that holds size
// events of the log, with a consistency proof from there: a refusal as
// inconsistent is another history under the same origin.
func (s *Service) probeExtends(ctx context.Context, w Endpoint, size int64, head *audit.Checkpoint) error {
	var proof tlog.TreeProof
	if size > 0 && size < head.Size {
		p, err := s.log.Consistency(ctx, size, head.Size)
		if err != nil {
			return err
		}
		proof = p.Hashes
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := AddCheckpoint(pctx, s.cfg.HTTPClient, w.URL, size, proof, head.Note)
	switch {
	case err == nil:
		s.mu.Lock()
		s.known[w.URL] = head.Size
		s.mu.Unlock()
	case errors.Is(err, ErrInconsistent):
		return &audit.RollbackError{Msg: fmt.Sprintf("the witness %s holds %d events of the journal %q, and the database's %d events do not extend them: it holds another history (an older backup restored and written on, or another instance's database). Nothing will be written: restore a backup of this instance that extends what the witnesses cosigned, or continue the journal under a new origin with `aidants audit new-origin` (docs/WITNESSES.md)",
			w.Verifier.Name(), size, s.logV.Name(), head.Size)}
	case IsRefusal(err):
		s.logger.Error("a witness refuses the log at start", "witness", w.Verifier.Name(), "err", err.Error())
	default:
		s.logger.Warn("a witness could not be reached at start", "witness", w.Verifier.Name(), "err", err.Error())
	}
	return nil
}

// logSignatureOnly strips a cosigned note down to the log's own signature.
func logSignatureOnly(msg []byte, name string) []byte {
	text, sigs, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return msg
	}
	out := append(bytes.Clone(text), '\n', '\n')
	for _, l := range strings.SplitAfter(string(sigs), "\n") {
		if strings.HasPrefix(l, "— "+name+" ") {
			out = append(out, l...)
		}
	}
	return out
}

// Served is the checkpoint /audit/checkpoint serves.
type Served struct {
	Note      []byte
	Size      int64
	Witnesses []Cosignature // the quorum's cosignatures (none with a quorum of 0)
	At        time.Time     // when the quorum cosigned it, by the witnesses' clocks
	Latest    int64         // size of the newest signed checkpoint
}

// ErrNotYetWitnessed is returned by Served before the first checkpoint
// reached the quorum.
var ErrNotYetWitnessed = errors.New("witness: no checkpoint has reached the witness quorum yet")

// Served returns the newest checkpoint with at least Quorum verified
// cosignatures of the configured witnesses (the newest signed one when
// the quorum is 0).
func (s *Service) Served(ctx context.Context) (*Served, error) {
	latest, err := s.log.Latest(ctx)
	if err != nil {
		return nil, err
	}
	if s.cfg.Quorum == 0 {
		return &Served{Note: latest.Note, Size: latest.Size, Latest: latest.Size}, nil
	}
	w, err := s.log.Witnessed(ctx)
	if errors.Is(err, audit.ErrNotWitnessed) {
		return nil, ErrNotYetWitnessed
	}
	if err != nil {
		return nil, err
	}
	_, by, err := Cosigned(w.Note, s.logV, s.vs)
	if err != nil {
		return nil, fmt.Errorf("witness: stored witnessed checkpoint %d: %w", w.Size, err)
	}
	if len(by) < s.cfg.Quorum {
		return nil, ErrNotYetWitnessed
	}
	return &Served{Note: w.Note, Size: w.Size, Witnesses: by, At: quorumTime(by, s.cfg.Quorum), Latest: latest.Size}, nil
}

// quorumTime is when the quorum was reached, as the witnesses say: the
// quorum-th newest of their cosignature times.
func quorumTime(by []Cosignature, quorum int) time.Time {
	ts := make([]time.Time, len(by))
	for i, c := range by {
		ts[i] = c.Time
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return b.Compare(a) })
	if quorum < 1 || quorum > len(ts) {
		return time.Time{}
	}
	return ts[quorum-1]
}

// Names are the configured witnesses' names, "témoin de développement"
// for the built-in one.
func (s *Service) Names() []string {
	var out []string
	for _, w := range s.cfg.Witnesses {
		out = append(out, Label(w.Verifier.Name()))
	}
	return out
}

// Label names a witness for people: the development witness says what it
// is.
func Label(name string) string {
	if name == DevWitnessName {
		return "témoin de développement (" + name + ")"
	}
	return name
}

// Verifiers are the configured witnesses' keys.
func (s *Service) Verifiers() []note.Verifier {
	out := make([]note.Verifier, len(s.vs))
	for i, v := range s.vs {
		out[i] = v
	}
	return out
}

// Register adds the service's metrics to reg: per witness, the
// checkpoints it cosigned, refused (a fork, a bad signature: the log is
// in question) and could not be asked; and the size and age of the newest
// witnessed checkpoint.
func (s *Service) Register(reg *prometheus.Registry) {
	for i, w := range s.cfg.Witnesses {
		labels := prometheus.Labels{"witness": w.Verifier.Name()}
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_witness_cosigned_total", Help: "Checkpoints a witness cosigned.", ConstLabels: labels},
				func() float64 { return float64(s.stats.Cosigned[i].Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_witness_refused_total", Help: "Checkpoints a witness refused (a fork, a bad signature, an unknown log).", ConstLabels: labels},
				func() float64 { return float64(s.stats.Refused[i].Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_witness_failed_total", Help: "Checkpoints that could not be sent to a witness (unreachable, busy).", ConstLabels: labels},
				func() float64 { return float64(s.stats.Failed[i].Load()) }),
		)
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aidants_witness_checkpoint_size", Help: "Events covered by the newest checkpoint kept in the witness state file."},
			func() float64 { return float64(s.stateSize()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aidants_witness_checkpoint_age_seconds", Help: "Seconds since the newest checkpoint was witnessed by this instance (0 before the first)."},
			func() float64 {
				if at := s.keptAt.Load(); at > 0 {
					return time.Since(time.UnixMilli(at)).Seconds()
				}
				return 0
			}),
	)
}
