// Package mail owns outgoing email: what people and aidants are told
// (SPEC §5.6, issue 15).
//
// A message is never sent on a request's path. The domain code queues it
// with Outbox.Queue inside the audit writer's unit that makes the change
// the message tells of, so a change rolled back sends nothing and a change
// committed always sends. A background Sender takes the due messages,
// hands them to a Transport (an SMTP relay, or the development mailbox),
// and records each outcome through the writer: retried with a bounded
// exponential back-off while the relay is unreachable, given up when the
// relay refuses the message for good or after GiveUpAfter.
//
// Delivery is at least once: a process killed between the relay's
// acceptance and the record of it sends the message again once its lease
// ends, with the same Message-ID, so that a repeat is recognisable (and
// dropped by most mail systems). Several instances may share one
// PostgreSQL database: a sender claims rows with a lease inside the
// writer's transaction, so two senders never hold the same row.
//
// Messages are rendered from typed data by Template: plain French text and
// HTML, readable on a phone, with no remote content and no link the text
// does not show (no tracking).
//
// The domain code renders before its unit (units must be short) and queues
// inside it, beside the event:
//
//	var signedMail = mail.MustTemplate[signedData]("mandat-signe", subject, text, html)
//
//	c, err := signedMail.Render(signedData{...})
//	if err != nil {
//		return err
//	}
//	err = log.Write(ctx, func(tx *audit.Tx) error {
//		// … the change, and tx.Append(audit.Event{Type: audit.MandateCreated, …})
//		return outbox.Queue(tx, mail.Message{To: email, Content: c})
//	})
//
// and, once Write returned nil, may call Sender.Wake so that the message
// leaves now rather than at the next poll. A message tells only what the
// person already sees in their space, and carries no token (but the
// remote consent link, single-use and useless without FranceConnect).
package mail

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"

	"aidants/audit"
	"aidants/store"
)

// ErrInvalid is wrapped by the errors of a message that cannot be queued:
// a missing or malformed recipient, subject or body. Its messages never
// repeat the recipient's address.
var ErrInvalid = errors.New("mail: invalid message")

// Message is a message to queue: one recipient and its content.
type Message struct {
	// To is the recipient's address (name@domain, without a display name).
	To string
	Content
	// DedupKey, when set, makes the message queued once: a second Queue
	// with the same key, in any transaction, queues nothing. Time-triggered
	// messages use it so that a sweep that runs again sends nothing twice,
	// for example "mandate-ending:<mandate id>:<end date>". It names
	// objects by their ids, never a person by their identity.
	DedupKey string
}

// Content is a rendered message (see Template.Render).
type Content struct {
	Subject string // one line
	Text    string // the text/plain body
	HTML    string // the text/html body; empty for a text-only message
}

// Limits of what Queue takes.
const (
	maxSubject  = 250
	maxBody     = 256 << 10
	maxDedupKey = 200
)

// Outbox queues messages. Its sender's domain names the messages
// (Message-ID); the zero of a *Outbox, nil, queues nothing, for where mail
// is off.
type Outbox struct {
	domain string
}

// NewOutbox returns the outbox of messages sent as from ("Aidants
// <ne-pas-repondre@aidants.example.fr>"), whose domain ends every
// Message-ID.
func NewOutbox(from string) (*Outbox, error) {
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("mail: sender %q: %w", from, err)
	}
	_, domain, ok := strings.Cut(a.Address, "@")
	if !ok || domain == "" {
		return nil, fmt.Errorf("mail: sender %q has no domain", from)
	}
	return &Outbox{domain: domain}, nil
}

// Queue adds m to the outbox, in the unit's transaction: it is sent once
// that transaction commits, and never if it rolls back. Queue MUST be
// called inside an audit writer unit (audit.Log.Write). A message whose
// DedupKey was queued before is not queued again, and Queue returns nil.
//
// On a nil Outbox (mail is off), Queue checks m and queues nothing.
func (o *Outbox) Queue(tx *audit.Tx, m Message) error {
	if err := m.check(); err != nil {
		return err
	}
	if o == nil {
		return nil
	}
	id := store.NewID("mail")
	now := store.T(tx.Now())
	var dedup any
	if m.DedupKey != "" {
		dedup = m.DedupKey
	}
	// ON CONFLICT DO NOTHING rather than a unique violation: on
	// PostgreSQL a failed statement would abort the caller's unit.
	_, err := tx.Exec(`INSERT INTO mail_outbox (id, message_id, recipient, subject, text_body, html_body, dedup_key, created_at, next_attempt_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING`,
		id, "<"+id+"@"+o.domain+">", m.To, m.Subject, m.Text, m.HTML, dedup, now, now)
	if err != nil {
		return fmt.Errorf("mail: queue: %w", err)
	}
	return nil
}

func (m *Message) check() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if a, err := mail.ParseAddress(m.To); err != nil || a.Name != "" || a.Address != m.To || !strings.Contains(m.To, "@") {
		bad("the recipient is not an email address")
	}
	switch {
	case strings.TrimSpace(m.Subject) == "":
		bad("no subject")
	case strings.ContainsAny(m.Subject, "\r\n"):
		bad("the subject is not one line")
	case utf8.RuneCountInString(m.Subject) > maxSubject:
		bad("the subject is longer than %d characters", maxSubject)
	}
	if strings.TrimSpace(m.Text) == "" {
		bad("no text body")
	}
	if len(m.Text) > maxBody || len(m.HTML) > maxBody {
		bad("a body is larger than %d bytes", maxBody)
	}
	for _, f := range [...]struct{ what, s string }{{"subject", m.Subject}, {"text body", m.Text}, {"HTML body", m.HTML}} {
		if !utf8.ValidString(f.s) {
			bad("the %s is not UTF-8", f.what)
		}
	}
	if len(m.DedupKey) > maxDedupKey {
		bad("the deduplication key is longer than %d bytes", maxDedupKey)
	}
	return errors.Join(errs...)
}

// Queued is a message in the outbox, as the sender and the tests see it.
type Queued struct {
	ID            string     `db:"id"`
	MessageID     string     `db:"message_id"` // <…@domain>
	To            string     `db:"recipient"`
	Subject       string     `db:"subject"`
	Text          string     `db:"text_body"`
	HTML          string     `db:"html_body"`
	DedupKey      *string    `db:"dedup_key"`
	CreatedAt     store.Time `db:"created_at"`
	NextAttemptAt store.Time `db:"next_attempt_at"`
	AttemptedAt   store.Time `db:"attempted_at"`
	Attempts      int        `db:"attempts"`
	SentAt        store.Time `db:"sent_at"`
	FailedAt      store.Time `db:"failed_at"`
	LastError     string     `db:"last_error"`

	claim string // the round that holds it (the sender's)
}

const queuedColumns = `id, message_id, recipient, subject, text_body, html_body, dedup_key, created_at, next_attempt_at, attempted_at, attempts, sent_at, failed_at, last_error`

// List returns the outbox's messages, oldest first, at most limit.
func List(ctx context.Context, db *store.DB, limit int) ([]Queued, error) {
	var out []Queued
	err := db.R.SelectContext(ctx, &out, db.Rebind(`SELECT `+queuedColumns+` FROM mail_outbox ORDER BY created_at, id LIMIT ?`), limit)
	if err != nil {
		return nil, fmt.Errorf("mail: list: %w", err)
	}
	return out, nil
}
