package mail_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"aidants/audit"
	"aidants/mail"
	"aidants/mail/mailpittest"
	"aidants/store"
	"aidants/store/storetest"
)

// TestCommittedMessageReachesTheRelayAsThePersonReadsIt queues a message
// in a unit that commits and finds it at a real mail server: its
// Message-ID the outbox's, its subject, its text and HTML parts as
// rendered (accents intact, the organisation's name escaped in HTML only),
// a multipart/alternative, marked automatic, with nothing remote.
func TestCommittedMessageReachesTheRelayAsThePersonReadsIt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		mp := mailpittest.Start(t, mailpittest.Options{})
		s := e.sender(t, relay(t, mp, "smtp", "", ""), mail.SenderOptions{})

		e.queue(t, signedMessage(t, "dominique@exemple.fr", "Lyon & Co <Entraide>"))
		rows := e.rows(t)
		if len(rows) != 1 || !rows[0].SentAt.IsZero() {
			t.Fatalf("outbox = %+v, want one message waiting", rows)
		}
		deliver(t, s, mail.Round{Claimed: 1, Sent: 1})

		got := mp.WaitMessages(t, 1, 5*time.Second)
		if len(got) != 1 {
			t.Fatalf("%d messages at the relay, want 1", len(got))
		}
		m := mp.Message(t, got[0].ID)
		if m.MessageID != bare(rows[0].MessageID) || !strings.HasSuffix(m.MessageID, "@aidants.test") {
			t.Errorf("Message-ID %q, want the outbox's %s", m.MessageID, rows[0].MessageID)
		}
		if m.Subject != "Un mandat a été signé pour vous avec Lyon & Co <Entraide>" {
			t.Errorf("subject %q", m.Subject)
		}
		if m.From.Address != "ne-pas-repondre@aidants.test" || m.From.Name != "Aidants" || len(m.To) != 1 || m.To[0].Address != "dominique@exemple.fr" {
			t.Errorf("from %+v to %+v", m.From, m.To)
		}
		for _, want := range []string{
			"Camille Martin, de Lyon & Co <Entraide>, peut désormais faire pour vous ces démarches : Argent, Famille et Logement.",
			"Ce mandat prend fin le 1er septembre 2026.",
			"Voir vos mandats et tout ce qui est fait pour vous : https://aidants.test/mon-espace",
			mail.Footer,
		} {
			if !strings.Contains(m.Text, want) {
				t.Errorf("text part lacks %q:\n%s", want, m.Text)
			}
		}
		for _, want := range []string{
			"Camille Martin, de Lyon &amp; Co &lt;Entraide&gt;, peut désormais faire pour vous ces démarches : Argent, Famille et Logement.",
			"<strong>1er septembre 2026</strong>",
			`<a class="bouton" href="https://aidants.test/mon-espace">Voir mon espace</a>`,
			`<meta name="viewport" content="width=device-width, initial-scale=1">`,
			`<html lang="fr">`,
		} {
			if !strings.Contains(m.HTML, want) {
				t.Errorf("HTML part lacks %q:\n%s", want, m.HTML)
			}
		}
		if strings.Contains(m.HTML, "<Entraide>") || strings.Contains(m.HTML, "<img") || strings.Contains(m.HTML, "src=") {
			t.Errorf("HTML part has unescaped data or remote content:\n%s", m.HTML)
		}
		if len(m.Attachments)+len(m.Inline) != 0 {
			t.Errorf("attachments %+v %+v", m.Attachments, m.Inline)
		}
		h := mp.Headers(t, got[0].ID)
		if ct := strings.Join(h["Content-Type"], ""); !strings.HasPrefix(ct, "multipart/alternative") {
			t.Errorf("Content-Type %q, want multipart/alternative", ct)
		}
		if a := strings.Join(h["Auto-Submitted"], ""); a != "auto-generated" {
			t.Errorf("Auto-Submitted %q", a)
		}
		raw := string(mp.Raw(t, got[0].ID))
		if !strings.Contains(raw, "charset=UTF-8") {
			t.Errorf("no UTF-8 charset in:\n%s", raw)
		}

		rows = e.rows(t)
		if rows[0].SentAt.IsZero() || rows[0].Attempts != 1 || rows[0].LastError != "" || !rows[0].FailedAt.IsZero() {
			t.Errorf("outbox after delivery = %+v, want sent at the first attempt", rows[0])
		}
		deliver(t, s, mail.Round{}) // nothing left
		if n := len(mp.Messages(t)); n != 1 {
			t.Errorf("%d messages at the relay after a second round, want still 1", n)
		}
		if st := s.Stats(); st.Sent.Load() != 1 || st.Failed.Load() != 0 || s.Pending() != 0 {
			t.Errorf("stats sent %d failed %d pending %d", st.Sent.Load(), st.Failed.Load(), s.Pending())
		}
	})
}

// TestRolledBackUnitSendsNothing queues a message in a unit that then
// fails: neither its change, nor its event, nor its message remains.
func TestRolledBackUnitSendsNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		mp := mailpittest.Start(t, mailpittest.Options{})
		s := e.sender(t, relay(t, mp, "smtp", "", ""), mail.SenderOptions{})

		refused := errors.New("the mandate cannot be signed")
		err := e.log.Write(context.Background(), func(tx *audit.Tx) error {
			if _, err := tx.Append(audit.Event{Type: audit.MandateCreated, Actor: audit.Actor{Kind: audit.ActorAidant, ID: "aid_1"}}); err != nil {
				return err
			}
			if err := e.outbox.Queue(tx, plain("dominique@exemple.fr", "Mandat signé")); err != nil {
				return err
			}
			return refused
		})
		if !errors.Is(err, refused) {
			t.Fatalf("write = %v, want the unit's error", err)
		}
		if rows := e.rows(t); len(rows) != 0 {
			t.Fatalf("outbox after a rollback = %+v, want empty", rows)
		}
		deliver(t, s, mail.Round{})
		time.Sleep(100 * time.Millisecond)
		if n := len(mp.Messages(t)); n != 0 {
			t.Fatalf("%d messages at the relay after a rollback", n)
		}
	})
}

// TestDedupKeyQueuesOnce queues the same time-triggered message from three
// sweeps (two in one unit, one after it was sent): one message reaches the
// person.
func TestDedupKeyQueuesOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		mp := mailpittest.Start(t, mailpittest.Options{})
		s := e.sender(t, relay(t, mp, "smtp", "", ""), mail.SenderOptions{})

		ending := plain("dominique@exemple.fr", "Votre mandat prend fin dans 7 jours")
		ending.DedupKey = "mandate-ending:man_1:2026-09-01"
		other := plain("dominique@exemple.fr", "Votre mandat prend fin dans 7 jours")
		other.DedupKey = "mandate-ending:man_2:2026-09-01"
		e.queue(t, ending, ending)
		e.queue(t, ending, other)
		if rows := e.rows(t); len(rows) != 2 {
			t.Fatalf("%d messages queued, want one per key", len(rows))
		}
		deliver(t, s, mail.Round{Claimed: 2, Sent: 2})
		e.queue(t, ending)
		deliver(t, s, mail.Round{})
		got := mp.WaitMessages(t, 2, 5*time.Second)
		if len(got) != 2 || got[0].MessageID == got[1].MessageID {
			t.Fatalf("relay got %+v, want two distinct messages", got)
		}
	})
}

// TestRelayDownRetriesWithBackoffThenDeliversOnce keeps the relay down
// through several rounds: each failure is recorded (without the password
// or the address), the next attempt waits twice as long as the one
// before, nothing is tried before it is due, and the message goes once the
// relay is back.
func TestRelayDownRetriesWithBackoffThenDeliversOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		mp := mailpittest.Start(t, mailpittest.Options{Auth: true})
		const backoff = time.Minute
		s := e.sender(t, relay(t, mp, "smtp", "relais:Secr3t-Passw0rd", ""), mail.SenderOptions{Backoff: backoff, MaxBackoff: 3 * backoff})
		mp.Stop()

		e.queue(t, plain("dominique@exemple.fr", "Une démarche a été faite pour vous"))
		start := e.clock.Now()
		var waits []time.Duration
		for attempt := 1; attempt <= 4; attempt++ {
			deliver(t, s, mail.Round{Claimed: 1, Failed: 1})
			q := e.rows(t)[0]
			if q.Attempts != attempt || !q.SentAt.IsZero() || !q.FailedAt.IsZero() {
				t.Fatalf("after attempt %d: %+v", attempt, q)
			}
			if q.LastError == "" || strings.Contains(q.LastError, "Secr3t") || strings.Contains(q.LastError, "dominique") {
				t.Fatalf("last error %q: want the reason, without password nor address", q.LastError)
			}
			wait := q.NextAttemptAt.Sub(e.clock.Now())
			waits = append(waits, wait)
			e.clock.Add(wait - time.Second)
			deliver(t, s, mail.Round{}) // not due yet
			e.clock.Add(time.Second)
		}
		if want := []time.Duration{backoff, 2 * backoff, 3 * backoff, 3 * backoff}; !equal(waits, want) {
			t.Fatalf("waits between attempts %v, want %v (doubling, bounded)", waits, want)
		}
		if st := s.Stats(); st.Failed.Load() != 4 || st.Sent.Load() != 0 || s.Pending() != 1 {
			t.Fatalf("stats failed %d sent %d pending %d", st.Failed.Load(), st.Sent.Load(), s.Pending())
		}

		mp.Restart(t)
		deliver(t, s, mail.Round{Claimed: 1, Sent: 1})
		got := mp.WaitMessages(t, 1, 5*time.Second)
		if len(got) != 1 || got[0].Subject != "Une démarche a été faite pour vous" || got[0].Username != "relais" {
			t.Fatalf("relay got %+v", got)
		}
		q := e.rows(t)[0]
		if q.SentAt.IsZero() || q.Attempts != 5 || q.LastError != "" || q.SentAt.Sub(start) != 9*backoff {
			t.Fatalf("outbox after delivery: %+v", q)
		}
		e.clock.Add(time.Hour)
		deliver(t, s, mail.Round{})
		if n := len(mp.Messages(t)); n != 1 {
			t.Fatalf("%d messages at the relay, want 1", n)
		}
	})
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRefusedOrTooOldMessagesAreGivenUp: a recipient the relay refuses for
// good is given up at once while the rest of the round is delivered; a
// message the relay never took is given up once older than GiveUpAfter.
func TestRefusedOrTooOldMessagesAreGivenUp(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		mp := mailpittest.Start(t, mailpittest.Options{AllowedRecipients: `@exemple\.fr$`})
		s := e.sender(t, relay(t, mp, "smtp", "", ""), mail.SenderOptions{Backoff: time.Hour, GiveUpAfter: 3 * time.Hour})

		e.queue(t, plain("inconnu@ailleurs.example", "Refusé"), plain("dominique@exemple.fr", "Accepté"))
		deliver(t, s, mail.Round{Claimed: 2, Sent: 1, GaveUp: 1})
		rows := e.rows(t)
		refused, taken := rows[0], rows[1]
		if refused.To != "inconnu@ailleurs.example" {
			refused, taken = taken, refused
		}
		if refused.FailedAt.IsZero() || !refused.SentAt.IsZero() || !strings.Contains(refused.LastError, "550") || strings.Contains(refused.LastError, "inconnu@") {
			t.Fatalf("refused message: %+v, want given up with the relay's 550, without the address", refused)
		}
		if taken.SentAt.IsZero() {
			t.Fatalf("accepted message not recorded as sent: %+v", taken)
		}
		if got := mp.WaitMessages(t, 1, 5*time.Second); len(got) != 1 || got[0].Subject != "Accepté" {
			t.Fatalf("relay got %+v", got)
		}
		e.clock.Add(10 * time.Hour)
		deliver(t, s, mail.Round{}) // a message given up is not tried again

		mp.Stop()
		e.queue(t, plain("dominique@exemple.fr", "Jamais parti"))
		deliver(t, s, mail.Round{Claimed: 1, Failed: 1})
		e.clock.Add(time.Hour)
		deliver(t, s, mail.Round{Claimed: 1, Failed: 1})
		e.clock.Add(2 * time.Hour)
		deliver(t, s, mail.Round{Claimed: 1, GaveUp: 1})
		if st := s.Stats(); st.GaveUp.Load() != 2 || s.Pending() != 0 {
			t.Fatalf("given up %d, pending %d: want 2 given up, nothing waiting", st.GaveUp.Load(), s.Pending())
		}
		deliver(t, s, mail.Round{})
	})
}

// TestQueueRefusesBadMessagesWithoutTheAddress: every problem at once, and
// the unit that hit them can still commit its other changes.
func TestQueueRefusesBadMessagesWithoutTheAddress(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	e := newEnv(t, db)
	bad := mail.Message{To: "Dominique <dominique@exemple.fr>\r\nBcc: x@y.z", Content: mail.Content{Subject: "Deux\nlignes", Text: " "}}
	err := e.log.Write(context.Background(), func(tx *audit.Tx) error {
		err := e.outbox.Queue(tx, bad)
		if !errors.Is(err, mail.ErrInvalid) {
			t.Errorf("queue = %v, want ErrInvalid", err)
		}
		for _, want := range []string{"recipient", "subject is not one line", "no text body"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("queue error %v does not say %q", err, want)
			}
		}
		if err != nil && strings.Contains(err.Error(), "dominique") {
			t.Errorf("queue error shows the address: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rows := e.rows(t); len(rows) != 0 {
		t.Fatalf("bad message queued: %+v", rows)
	}
	var off *mail.Outbox
	err = e.log.Write(context.Background(), func(tx *audit.Tx) error { return off.Queue(tx, plain("dominique@exemple.fr", "Rien")) })
	if err != nil || len(e.rows(t)) != 0 {
		t.Fatalf("a nil outbox: err %v, rows %d, want nothing queued and no error", err, len(e.rows(t)))
	}
}

// TestOldMessagesArePurged deletes sent and given-up messages past the
// retention, never one still waiting.
func TestOldMessagesArePurged(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	e := newEnv(t, db)
	mb := mail.NewDevMailbox()
	s := e.sender(t, mb, mail.SenderOptions{Retention: 24 * time.Hour})
	e.queue(t, plain("dominique@exemple.fr", "Ancien"))
	deliver(t, s, mail.Round{Claimed: 1, Sent: 1})
	e.clock.Add(2 * time.Hour)
	e.queue(t, plain("dominique@exemple.fr", "En attente"))
	e.clock.Add(30 * time.Hour)
	n, err := s.Purge(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("purge = %d, %v, want the one sent message", n, err)
	}
	rows := e.rows(t)
	if len(rows) != 1 || rows[0].Subject != "En attente" {
		t.Fatalf("outbox after purge = %+v", rows)
	}
}

// TestRunDeliversInTheBackgroundAndCounts runs the sender as a server
// does: a message committed and followed by Wake is delivered without
// waiting for the next poll, the metrics count it, and Run returns when
// its context ends.
func TestRunDeliversInTheBackgroundAndCounts(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	mb := mail.NewDevMailbox()
	s := e.sender(t, mb, mail.SenderOptions{Poll: time.Hour})
	reg := prometheus.NewRegistry()
	s.Register(reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	e.queue(t, plain("dominique@exemple.fr", "Une démarche a été faite pour vous"))
	s.Wake()
	deadline := time.Now().Add(5 * time.Second)
	for len(mb.Messages()) == 0 || s.Stats().Sent.Load() == 0 || s.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Wake did not make Run deliver")
		}
		time.Sleep(10 * time.Millisecond)
	}
	metrics := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			metrics[f.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"aidants_mail_sent_total": 1, "aidants_mail_failed_total": 0, "aidants_mail_given_up_total": 0,
		"aidants_mail_queued": 0, "aidants_mail_oldest_queued_seconds": 0}
	for name, v := range want {
		if got, ok := metrics[name]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}
