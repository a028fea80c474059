package mail_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"aidants/audit"
	"aidants/mail"
	"aidants/mail/mailpittest"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	storetest.Main(m)
}

const origin = "mail.test/audit"

// clock is the audit log's clock, moved by the tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a migrated database with its audit log (on a clock the test
// moves) and an outbox sending as from.
type env struct {
	db     *store.DB
	log    *audit.Log
	clock  *clock
	outbox *mail.Outbox
}

const from = "Aidants <ne-pas-repondre@aidants.test>"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newEnv(t *testing.T, db *store.DB) *env {
	t.Helper()
	skey, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 3, 12, 13, 5, 0, 0, time.UTC)}
	l, err := audit.Open(context.Background(), db, audit.Options{SigningKey: skey, Now: c.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	o, err := mail.NewOutbox(from)
	if err != nil {
		t.Fatal(err)
	}
	return &env{db: db, log: l, clock: c, outbox: o}
}

// sender returns a sender of the env's outbox through t.
func (e *env) sender(tb testing.TB, t mail.Transport, opts mail.SenderOptions) *mail.Sender {
	tb.Helper()
	opts.From, opts.Transport, opts.Logger = from, t, quiet
	s, err := mail.NewSender(e.log, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// relay is the SMTP transport to a mailpit.
func relay(t testing.TB, mp *mailpittest.Server, scheme, userinfo, caFile string) *mail.SMTP {
	t.Helper()
	u := scheme + "://" + mp.SMTPAddr
	if userinfo != "" {
		u = scheme + "://" + userinfo + "@" + mp.SMTPAddr
	}
	s, err := mail.NewSMTP(u, caFile)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// queue queues msgs in one unit that also journals the change they tell
// of, as the domain code does.
func (e *env) queue(t testing.TB, msgs ...mail.Message) {
	t.Helper()
	err := e.log.Write(context.Background(), func(tx *audit.Tx) error {
		if _, err := tx.Append(audit.Event{Type: audit.MandateCreated, Actor: audit.Actor{Kind: audit.ActorAidant, ID: "aid_1"}, Mandate: "man_1"}); err != nil {
			return err
		}
		for _, m := range msgs {
			if err := e.outbox.Queue(tx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("queue: %v", err)
	}
}

// rows returns the outbox, oldest first.
func (e *env) rows(t testing.TB) []mail.Queued {
	t.Helper()
	qs, err := mail.List(context.Background(), e.db, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return qs
}

// deliver runs one round and checks what it did.
func deliver(t testing.TB, s *mail.Sender, want mail.Round) {
	t.Helper()
	r, err := s.DeliverDue(context.Background())
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if r != want {
		t.Fatalf("round = %+v, want %+v", r, want)
	}
}

// bare is a Message-ID without its angle brackets, as mailpit shows it.
func bare(id string) string { return strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">") }

// The kind of message the domain code will send when a mandate is signed,
// to exercise rendering end to end.
type mandateSigned struct {
	Organisation string
	Aidant       string
	Demarches    []string
	End          time.Time
	SpaceURL     string
}

var mandateSignedMail = mail.MustTemplate[mandateSigned]("mandat-signe",
	`Un mandat a été signé pour vous avec {{.Organisation}}`,
	`Bonjour,

{{.Aidant}}, de {{.Organisation}}, peut désormais faire pour vous ces démarches : {{list .Demarches}}.
Ce mandat prend fin le {{date .End}}.

Voir vos mandats et tout ce qui est fait pour vous : {{.SpaceURL}}
Si vous n'étiez pas d'accord, dites-le depuis cette page.`,
	`<h1>Un mandat a été signé pour vous</h1>
<p>{{.Aidant}}, de {{.Organisation}}, peut désormais faire pour vous ces démarches : {{list .Demarches}}.</p>
<p>Ce mandat prend fin le <strong>{{date .End}}</strong>.</p>
<p><a class="bouton" href="{{.SpaceURL}}">Voir mon espace</a></p>
<p>Si vous n'étiez pas d'accord, dites-le depuis cette page.</p>`)

func signedMessage(t testing.TB, to, org string) mail.Message {
	t.Helper()
	c, err := mandateSignedMail.Render(mandateSigned{
		Organisation: org, Aidant: "Camille Martin", Demarches: []string{"Argent", "Famille", "Logement"},
		End: time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC), SpaceURL: "https://aidants.test/mon-espace",
	})
	if err != nil {
		t.Fatal(err)
	}
	return mail.Message{To: to, Content: c}
}

// plain is a short text-only message.
func plain(to, subject string) mail.Message {
	return mail.Message{To: to, Content: mail.Content{Subject: subject, Text: "Bonjour,\n\nUne démarche a été faite pour vous."}}
}
