package notify_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"aidants/audit"
	"aidants/mail"
	"aidants/notify"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const public = "https://aidants.test"

const jo = "josephine@exemple.fr"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t     *testing.T
	db    *store.DB
	log   *audit.Log
	clock *clock
	n     *notify.Notifier
}

// newEnv is a database with an organisation, two aidants, two people (one
// without email) and a service, and a notifier watching its journal.
func newEnv(t *testing.T, db *store.DB) *env {
	t.Helper()
	skey, err := audit.GenerateKey("notify.test/audit")
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 3, 12, 13, 5, 0, 0, time.UTC)}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := audit.Open(context.Background(), db, audit.Options{SigningKey: skey, Now: c.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	o, err := mail.NewOutbox("Aidants <ne-pas-repondre@aidants.test>")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, log: l, clock: c, n: notify.New(o, public, quiet)}
	l.Watch(e.n.Watch)
	now := store.T(c.Now())
	e.exec(`INSERT INTO organisations (id, name, siret, created_at, updated_at) VALUES ('org_a', 'France Services Lyon & Co', '11111111111111', ?, ?)`, now, now)
	e.exec(`INSERT INTO aidants (id, email, given_name, family_name, habilitated_until, created_at, updated_at)
		VALUES ('aid_camille', 'camille@fs.test', 'Camille', 'Martin', '2026-04-05', ?, ?)`, now, now)
	e.exec(`INSERT INTO aidants (id, email, given_name, family_name, habilitated_until, created_at, updated_at)
		VALUES ('aid_dominique', 'dominique@fs.test', 'Dominique', 'Bernard', '2027-01-01', ?, ?)`, now, now)
	e.exec(`INSERT INTO usagers (id, issuer, subject, given_name, family_name, birthdate, gender, email, created_at, updated_at)
		VALUES ('usa_jo', 'fc', 'jo', 'Joséphine', 'Lefèvre', '1948-03-12', 'female', 'josephine@exemple.fr', ?, ?)`, now, now)
	e.exec(`INSERT INTO usagers (id, issuer, subject, given_name, family_name, birthdate, created_at, updated_at)
		VALUES ('usa_nomail', 'fc', 'nomail', 'Ahmed', 'Benali', '1960-01-01', ?, ?)`, now, now)
	e.exec(`INSERT INTO services (id, name, redirect_uris, demarches, auth_method, created_at)
		VALUES ('svc_caf', 'Caisse d''allocations', 'https://caf.test/cb', 'social', 'private_key_jwt', ?)`, now)
	return e
}

func (e *env) exec(q string, args ...any) {
	e.t.Helper()
	if _, err := e.db.W.Exec(e.db.Rebind(q), args...); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

// mandate records a mandate of org_a for who, from start for d.
func (e *env) mandate(id, who string, start time.Time, d time.Duration, dem ...string) {
	e.t.Helper()
	e.exec(`INSERT INTO mandate_drafts (id, organisation_id, created_by, created_at, demarches, duration, method, digest, salt, status, expires_at)
		VALUES (?, 'org_a', 'aid_camille', ?, ?, '1m', 'on_site', 'd', 's', 'completed', ?)`, "dra_"+id, store.T(start), strings.Join(dem, ","), store.T(start))
	e.exec(`INSERT INTO mandates (id, organisation_id, usager_id, created_by, created_at, expires_at, method, draft_id, jws, evidence_token, evidence_jwk)
		VALUES (?, 'org_a', ?, 'aid_camille', ?, ?, 'on_site', ?, 'jws', 'tok', 'jwk')`, id, who, store.T(start), store.T(start.Add(d)), "dra_"+id)
	for _, c := range dem {
		e.exec(`INSERT INTO mandate_demarches (mandate_id, demarche) VALUES (?, ?)`, id, c)
	}
}

// act journals an action of Camille for who, as the provider does.
func (e *env) act(who, dem string) int64 {
	e.t.Helper()
	var idx int64
	err := e.log.Write(context.Background(), func(tx *audit.Tx) error {
		var err error
		idx, err = tx.Append(audit.Event{Type: audit.MandateUsed, Actor: audit.Actor{Kind: audit.ActorAidant, ID: "aid_camille"},
			Aidant: "aid_camille", Organisation: "org_a", Usager: who, Mandate: "man_1", Service: "svc_caf", Demarches: []string{dem}})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return idx
}

func (e *env) outbox() []mail.Queued {
	e.t.Helper()
	qs, err := mail.List(context.Background(), e.db, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return qs
}

// to is what the outbox holds for the address.
func (e *env) to(addr string) []mail.Queued {
	var out []mail.Queued
	for _, q := range e.outbox() {
		if q.To == addr {
			out = append(out, q)
		}
	}
	return out
}

func (e *env) sweep() int {
	e.t.Helper()
	n, err := e.n.Sweep(context.Background(), e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// noIdentifiers: a message names no one by a pseudonymous id and carries
// no token.
func noIdentifiers(t *testing.T, q mail.Queued) {
	t.Helper()
	for _, bad := range []string{"usa_", "man_", "aid_", "org_", "svc_", "dra_", "token", "jws"} {
		if strings.Contains(q.Subject+q.Text+q.HTML, bad) {
			t.Errorf("message %q holds %q", q.Subject, bad)
		}
	}
}

func TestActionsAreToldAtOnceThenGroupedWithinTheHour(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		first := e.act("usa_jo", "social")
		q := e.to(jo)
		if len(q) != 1 {
			t.Fatalf("%d messages after the first action, want 1", len(q))
		}
		m := q[0]
		if m.To != "josephine@exemple.fr" || m.Subject != "Camille Martin a fait une démarche pour vous sur Caisse d'allocations" {
			t.Errorf("first message to %s: %q", m.To, m.Subject)
		}
		for _, want := range []string{"Bonjour Joséphine Lefèvre,", "le 12 mars 2026 à 14 h 05, Camille Martin, de France Services Lyon & Co, a ouvert « Caisse d'allocations » pour vous, pour la démarche « Social - Santé »",
			"Ce n'était pas d'accord ? Dites-le ici : " + public + "/mon-espace/objection/" + itoa(first), public + "/mon-espace#courriels"} {
			if !strings.Contains(m.Text, want) {
				t.Errorf("text lacks %q:\n%s", want, m.Text)
			}
		}
		noIdentifiers(t, m)

		// Two more within the hour wait; the sweep before the hour ends
		// sends nothing.
		e.clock.Add(10 * time.Minute)
		second := e.act("usa_jo", "social")
		e.clock.Add(40 * time.Minute)
		third := e.act("usa_jo", "argent")
		if n := len(e.to(jo)); n != 1 {
			t.Fatalf("%d messages after three actions within the hour, want still 1", n)
		}
		e.clock.Add(9 * time.Minute) // 59 min after the first message
		e.sweep()
		if n := len(e.to(jo)); n != 1 {
			t.Fatalf("%d messages before the hour ended, want 1", n)
		}
		e.clock.Add(time.Minute)
		e.sweep()
		q = e.to(jo)
		if len(q) != 2 {
			t.Fatalf("%d messages when the hour ended, want 2", len(q))
		}
		g := q[1]
		if g.Subject != "2 démarches ont été faites pour vous" || !strings.Contains(g.Text, "/mon-espace/objection/"+itoa(second)) ||
			!strings.Contains(g.Text, "/mon-espace/objection/"+itoa(third)) || !strings.Contains(g.Text, "« Argent - Impôts - Consommation »") {
			t.Errorf("grouped message %q:\n%s", g.Subject, g.Text)
		}
		noIdentifiers(t, g)
		if e.sweep(); len(e.to(jo)) != 2 {
			t.Fatal("a second sweep sent the grouped actions again")
		}
		// The hour now runs from the grouped message: an action right after
		// it waits; one more than an hour later leaves at once.
		e.clock.Add(5 * time.Minute)
		e.act("usa_jo", "social")
		if n := len(e.to(jo)); n != 2 {
			t.Fatalf("%d messages, want the action after the grouped message to wait", n)
		}
		e.clock.Add(2 * time.Hour)
		e.sweep()
		if n := len(e.to(jo)); n != 3 {
			t.Fatalf("%d messages, want the waiting action sent by the sweep", n)
		}
		e.clock.Add(61 * time.Minute)
		e.act("usa_jo", "social")
		if n := len(e.to(jo)); n != 4 {
			t.Fatalf("%d messages, want an action more than an hour after the last message sent at once", n)
		}
	})
}

func TestNoActionMessageWhenTurnedOffOrNoEmail(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.act("usa_nomail", "social")
		if n := len(e.outbox()); n != 0 {
			t.Fatalf("%d messages for a person without email", n)
		}
		e.exec(`UPDATE usagers SET action_mails = FALSE WHERE id = 'usa_jo'`)
		e.act("usa_jo", "social")
		if n := len(e.outbox()); n != 0 {
			t.Fatalf("%d messages for a person who turned action messages off", n)
		}
		var events int
		if err := db.W.Get(&events, `SELECT COUNT(*) FROM audit_events WHERE type = 'mandate.used'`); err != nil || events != 2 {
			t.Fatalf("%d actions journaled (%v), want 2: the journal does not depend on email", events, err)
		}
	})
}

func TestRolledBackActionQueuesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		boom := errors.New("boom")
		err := e.log.Write(context.Background(), func(tx *audit.Tx) error {
			if _, err := tx.Append(audit.Event{Type: audit.MandateUsed, Actor: audit.Actor{Kind: audit.ActorAidant, ID: "aid_camille"},
				Aidant: "aid_camille", Organisation: "org_a", Usager: "usa_jo", Mandate: "man_1", Service: "svc_caf", Demarches: []string{"social"}}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("write: %v", err)
		}
		if n := len(e.outbox()); n != 0 {
			t.Fatalf("%d messages after a rolled-back action", n)
		}
		var at *int64
		if err := db.W.Get(&at, `SELECT action_mail_at FROM usagers WHERE id = 'usa_jo'`); err != nil || at != nil {
			t.Fatalf("action_mail_at = %v (%v) after a rolled-back action", at, err)
		}
	})
}

func TestMandateEndingAndHabilitationEndingAreToldOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		now := e.clock.Now()
		e.mandate("man_ending", "usa_jo", now.Add(-25*24*time.Hour), 31*24*time.Hour, "social", "argent") // ends in 6 days
		e.mandate("man_later", "usa_jo", now, 182*24*time.Hour, "social")                                 // ends in 6 months
		e.mandate("man_day", "usa_jo", now, 24*time.Hour, "social")                                       // one day: no notice
		e.mandate("man_nomail", "usa_nomail", now.Add(-25*24*time.Hour), 31*24*time.Hour, "social")
		e.sweep()
		q := e.outbox()
		var subjects []string
		for _, m := range q {
			subjects = append(subjects, m.To+": "+m.Subject)
			noIdentifiers(t, m)
		}
		want := []string{
			"josephine@exemple.fr: Votre mandat avec France Services Lyon & Co prend fin le 18 mars 2026",
			"camille@fs.test: Votre habilitation Aidants prend fin le 5 avril 2026",
		}
		if strings.Join(subjects, "\n") != strings.Join(want, "\n") && strings.Join(subjects, "\n") != want[1]+"\n"+want[0] {
			t.Fatalf("messages:\n%s\nwant:\n%s", strings.Join(subjects, "\n"), strings.Join(want, "\n"))
		}
		for _, m := range q {
			if m.To == "josephine@exemple.fr" && !strings.Contains(m.Text, "Argent - Impôts - Consommation et Social - Santé") {
				t.Errorf("ending message lacks the démarches:\n%s", m.Text)
			}
		}
		e.clock.Add(24 * time.Hour)
		e.sweep()
		if n := len(e.outbox()); n != 2 {
			t.Fatalf("%d messages after a second sweep, want still 2", n)
		}
	})
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
