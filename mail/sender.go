package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"aidants/audit"
	"aidants/store"
)

// SenderOptions configures a Sender. Zero values take the defaults.
type SenderOptions struct {
	// From is the sender of every message, "Aidants <ne-pas-repondre@…>".
	From string
	// Transport takes the messages (required).
	Transport Transport
	Logger    *slog.Logger
	// Poll is how often Run looks for due messages (default 1 s); Wake
	// makes it look at once.
	Poll time.Duration
	// Batch bounds the messages of one round (default 50).
	Batch int
	// Timeout bounds a round's delivery (default 1 min).
	Timeout time.Duration
	// Lease is how long the messages a round claimed are left to it
	// before another sender (or this one, after a crash) may take them
	// again (default 5 min; at least twice Timeout).
	Lease time.Duration
	// Backoff is the wait after a first failed attempt (default 30 s),
	// doubled after each further one up to MaxBackoff (default 1 h).
	Backoff, MaxBackoff time.Duration
	// GiveUpAfter: a message still not delivered this long after it was
	// queued is given up (default 72 h, what relays allow themselves).
	GiveUpAfter time.Duration
	// Retention: sent and given-up messages are deleted this long after
	// they were queued (default 90 days). A deduplication key is
	// forgotten with its message.
	Retention time.Duration
}

func (o *SenderOptions) defaults() error {
	if o.Transport == nil {
		return errors.New("mail: a sender needs a transport")
	}
	if _, err := mail.ParseAddress(o.From); err != nil {
		return fmt.Errorf("mail: sender %q: %w", o.From, err)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.Poll, time.Second)
	set(&o.Timeout, time.Minute)
	set(&o.Lease, 5*time.Minute)
	set(&o.Backoff, 30*time.Second)
	set(&o.MaxBackoff, time.Hour)
	set(&o.GiveUpAfter, 72*time.Hour)
	set(&o.Retention, 90*24*time.Hour)
	if o.Batch <= 0 {
		o.Batch = 50
	}
	if o.Lease < 2*o.Timeout {
		return fmt.Errorf("mail: the lease (%v) must be at least twice the delivery timeout (%v)", o.Lease, o.Timeout)
	}
	return nil
}

// Sender delivers the outbox in the background, never on a request's
// path. Each round claims the due messages through the audit writer (a
// unit without events, like every write), hands them to the transport
// outside any transaction, and records each outcome through the writer.
type Sender struct {
	log  *audit.Log
	db   *store.DB
	opts SenderOptions

	round sync.Mutex // one round at a time in this process
	wake  chan struct{}
	stats Stats

	pending   atomic.Int64 // messages waiting, as of the last look
	oldest    atomic.Int64 // Unix ms of the oldest waiting, 0 if none
	lastPurge time.Time    // guarded by round
}

// Stats counts what the sender did since the process started.
type Stats struct {
	Sent   atomic.Int64 // messages the relay took
	Failed atomic.Int64 // attempts that failed (retried later, or given up)
	GaveUp atomic.Int64 // messages given up: refused for good, or too old
}

// NewSender returns the sender of log's outbox.
func NewSender(log *audit.Log, opts SenderOptions) (*Sender, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	return &Sender{log: log, db: log.DB(), opts: opts, wake: make(chan struct{}, 1)}, nil
}

// Stats returns the sender's counters.
func (s *Sender) Stats() *Stats { return &s.stats }

// Pending is how many messages wait to be sent, as of the last round.
// The messages given up are not counted.
func (s *Sender) Pending() int64 { return s.pending.Load() }

// Wake makes Run look for due messages now rather than at its next poll,
// for a caller that has just committed a message.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers due messages until ctx ends, and deletes the old ones once
// an hour. A round under way when ctx ends is finished (within Timeout) so
// that what was sent is recorded.
func (s *Sender) Run(ctx context.Context) {
	for {
		r, err := s.DeliverDue(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("mail: a delivery round failed; tried again at the next", "err", err.Error())
		}
		if _, err := s.purge(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("mail: deleting old messages failed", "err", err.Error())
		}
		wait := s.opts.Poll
		if err == nil && r.Claimed == s.opts.Batch {
			wait = 0 // more are due
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// Round is what one round did.
type Round struct {
	Claimed int // messages taken from the outbox
	Sent    int // taken by the relay
	Failed  int // not taken, retried later
	GaveUp  int // not taken, given up
}

// outboxState is what the readers see of the outbox.
type outboxState struct {
	N      int64 `db:"n"`
	Next   int64 `db:"next"`
	Oldest int64 `db:"oldest"`
}

// DeliverDue runs one round now: it claims up to Batch due messages,
// delivers them and records the outcomes. Tests call it to deliver at
// once; Run calls it at every poll.
func (s *Sender) DeliverDue(ctx context.Context) (Round, error) {
	s.round.Lock()
	defer s.round.Unlock()
	var r Round
	// A look through the readers first: a round with nothing due costs
	// no write.
	st, err := s.look(ctx)
	if err != nil {
		return r, err
	}
	if st.N == 0 || st.Next > store.Millis(s.log.Now()) {
		return r, nil
	}

	batch, err := s.claim(ctx)
	if err != nil {
		return r, err
	}
	r.Claimed = len(batch)
	if len(batch) == 0 {
		return r, nil
	}
	out := make([]Outgoing, len(batch))
	for i, q := range batch {
		out[i] = Outgoing{ID: q.ID, MessageID: q.MessageID, From: s.opts.From, To: q.To, Date: q.CreatedAt.Time,
			Content: Content{Subject: q.Subject, Text: q.Text, HTML: q.HTML}}
	}
	// The round finishes what it started even if ctx ends: what the relay
	// took must be recorded, or it is sent again.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
	errs := s.opts.Transport.Send(dctx, out)
	cancel()
	if len(errs) != len(batch) {
		return r, fmt.Errorf("mail: the transport answered %d outcomes for %d messages", len(errs), len(batch))
	}
	r, err = s.record(ctx, batch, errs)
	if err != nil {
		return r, err
	}
	_, err = s.look(ctx) // the metrics see what is left
	return r, err
}

// look reads how many messages wait, the next one due and the oldest, for
// the round and the metrics.
func (s *Sender) look(ctx context.Context) (outboxState, error) {
	var st outboxState
	if err := s.db.R.GetContext(ctx, &st, `SELECT COUNT(*) AS n, COALESCE(MIN(next_attempt_at), 0) AS next, COALESCE(MIN(created_at), 0) AS oldest
		FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL`); err != nil {
		return st, fmt.Errorf("mail: look at the outbox: %w", err)
	}
	s.pending.Store(st.N)
	s.oldest.Store(st.Oldest)
	return st, nil
}

// claim takes the due messages for this round: they are not due again
// until the lease ends, so no other sender takes them meanwhile.
func (s *Sender) claim(ctx context.Context) ([]Queued, error) {
	token := store.RandomToken(12)
	var batch []Queued
	q := `SELECT ` + queuedColumns + ` FROM mail_outbox
		WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?
		ORDER BY next_attempt_at, id LIMIT ?`
	if s.db.Dialect == store.Postgres {
		// Every writer's batch already waits for the lock on the log
		// head; this keeps claims apart even without it.
		q += ` FOR UPDATE SKIP LOCKED`
	}
	err := s.log.Write(ctx, func(tx *audit.Tx) error {
		batch = batch[:0]
		now := tx.Now()
		if err := tx.Select(&batch, q, store.T(now), s.opts.Batch); err != nil {
			return err
		}
		for i := range batch {
			if _, err := tx.Exec(`UPDATE mail_outbox SET claim = ?, attempts = attempts + 1, attempted_at = ?, next_attempt_at = ? WHERE id = ?`,
				token, store.T(now), store.T(now.Add(s.opts.Lease)), batch[i].ID); err != nil {
				return err
			}
			batch[i].Attempts++
			batch[i].claim = token
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mail: claim due messages: %w", err)
	}
	return batch, nil
}

// record stores each message's outcome. A message the relay took is
// marked sent even if another sender took it since (its lease ended): it
// was sent. A failure is recorded only while the round still holds the
// message.
func (s *Sender) record(ctx context.Context, batch []Queued, errs []error) (Round, error) {
	r := Round{Claimed: len(batch)}
	type failure struct {
		q      *Queued
		why    string
		giveUp bool
		retry  time.Duration
	}
	var failures []failure
	for i := range batch {
		if errs[i] == nil {
			r.Sent++
			continue
		}
		q := &batch[i]
		f := failure{q: q, why: describe(errs[i], q.To)}
		f.giveUp = errors.Is(errs[i], ErrRefused) || s.log.Now().Sub(q.CreatedAt.Time) >= s.opts.GiveUpAfter
		if f.giveUp {
			r.GaveUp++
		} else {
			r.Failed++
			f.retry = s.backoff(q.Attempts)
		}
		failures = append(failures, f)
	}
	s.stats.Sent.Add(int64(r.Sent))
	s.stats.Failed.Add(int64(r.Failed + r.GaveUp))
	s.stats.GaveUp.Add(int64(r.GaveUp))
	err := s.log.Write(context.WithoutCancel(ctx), func(tx *audit.Tx) error {
		now := store.T(tx.Now())
		for i := range batch {
			if errs[i] != nil {
				continue
			}
			if _, err := tx.Exec(`UPDATE mail_outbox SET sent_at = COALESCE(sent_at, ?), claim = NULL, last_error = '' WHERE id = ?`, now, batch[i].ID); err != nil {
				return err
			}
		}
		for _, f := range failures {
			var err error
			if f.giveUp {
				_, err = tx.Exec(`UPDATE mail_outbox SET failed_at = ?, claim = NULL, last_error = ? WHERE id = ? AND claim = ? AND sent_at IS NULL`,
					now, f.why, f.q.ID, f.q.claim)
			} else {
				_, err = tx.Exec(`UPDATE mail_outbox SET next_attempt_at = ?, claim = NULL, last_error = ? WHERE id = ? AND claim = ? AND sent_at IS NULL`,
					store.T(now.Add(f.retry)), f.why, f.q.ID, f.q.claim)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	for _, f := range failures {
		if f.giveUp {
			s.opts.Logger.Error("mail: message given up", "message", f.q.ID, "attempts", f.q.Attempts, "err", f.why)
		}
	}
	if r.Failed > 0 {
		var first failure
		for _, f := range failures {
			if !f.giveUp {
				first = f
				break
			}
		}
		s.opts.Logger.Warn("mail: messages not delivered, retried later", "count", r.Failed, "retry_in", first.retry.String(), "err", first.why)
	}
	if err != nil {
		// The relay took what it took; unrecorded, those messages are sent
		// again (same Message-ID) once their lease ends.
		return r, fmt.Errorf("mail: record the outcomes: %w", err)
	}
	return r, nil
}

// backoff is the wait after the attempts-th failed attempt.
func (s *Sender) backoff(attempts int) time.Duration {
	d := s.opts.Backoff
	for i := 1; i < attempts && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.opts.MaxBackoff)
}

// describe is an error as stored and logged: without the recipient's
// address (personal data) and bounded.
func describe(err error, to string) string {
	msg := err.Error()
	if to != "" {
		msg = regexp.MustCompile(`(?i)`+regexp.QuoteMeta(to)).ReplaceAllLiteralString(msg, "<destinataire>")
	}
	if len(msg) > 500 {
		msg = strings.ToValidUTF8(msg[:500], "") + "…"
	}
	return msg
}

// purge deletes, at most once an hour, the sent and given-up messages
// queued more than Retention ago, a bounded number at a time.
func (s *Sender) purge(ctx context.Context) (int64, error) {
	s.round.Lock()
	defer s.round.Unlock()
	now := s.log.Now()
	if now.Sub(s.lastPurge) < time.Hour {
		return 0, nil
	}
	s.lastPurge = now
	return s.Purge(ctx)
}

// Purge deletes the sent and given-up messages queued more than Retention
// ago (at most 1,000 at a time; Run calls it once an hour).
func (s *Sender) Purge(ctx context.Context) (int64, error) {
	var n int64
	err := s.log.Write(ctx, func(tx *audit.Tx) error {
		res, err := tx.Exec(`DELETE FROM mail_outbox WHERE id IN (SELECT id FROM mail_outbox
			WHERE created_at < ? AND (sent_at IS NOT NULL OR failed_at IS NOT NULL) ORDER BY created_at LIMIT 1000)`,
			store.T(tx.Now().Add(-s.opts.Retention)))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mail: delete old messages: %w", err)
	}
	return n, nil
}

// Register adds the sender's metrics to reg: messages sent, failed
// attempts, messages given up, and the messages waiting with the age of
// the oldest (an alert on it finds a relay that stopped taking mail).
func (s *Sender) Register(reg *prometheus.Registry) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_mail_sent_total", Help: "Messages the mail relay took."},
			func() float64 { return float64(s.stats.Sent.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_mail_failed_total", Help: "Delivery attempts that failed (retried later, or given up)."},
			func() float64 { return float64(s.stats.Failed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aidants_mail_given_up_total", Help: "Messages given up: refused for good by the relay, or still undelivered after the give-up delay."},
			func() float64 { return float64(s.stats.GaveUp.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aidants_mail_queued", Help: "Messages waiting in the outbox to be sent."},
			func() float64 { return float64(s.pending.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aidants_mail_oldest_queued_seconds", Help: "Age of the oldest message waiting in the outbox (0 when none)."},
			func() float64 {
				if ms := s.oldest.Load(); ms > 0 {
					return s.log.Now().Sub(time.UnixMilli(ms)).Seconds()
				}
				return 0
			}),
	)
}
