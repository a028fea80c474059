package objection_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/keys"
	"aidants/mail"
	"aidants/mandate"
	"aidants/notify"
	"aidants/objection"
	"aidants/org"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// env: two organisations, each with an aidant and a référent (with an
// email), a person with a mandate of organisation A and an action taken
// with it, another person with a mandate of A, and the notifier queueing
// into the outbox.
type env struct {
	t        *testing.T
	db       *store.DB
	log      *audit.Log
	svc      *objection.Service
	a, b     mandate.Actor
	refA     string
	fcKey    *ecdsa.PrivateKey
	mandates *mandate.Service
	m, other *mandate.Mandate
	action   int64 // the mandate.used of m
	otherAct int64 // an action for the other person
}

const fcIssuer = "https://franceconnect.test.invalid"

func newEnv(t *testing.T, db *store.DB) *env {
	t.Helper()
	ctx := context.Background()
	skey, _ := audit.GenerateKey("test.invalid/audit")
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: skey, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	outbox, err := mail.NewOutbox("Aidants <ne-pas-repondre@aidants.test.invalid>")
	if err != nil {
		t.Fatal(err)
	}
	l.Watch(notify.New(outbox, "https://aidants.test.invalid", nil).Watch)
	km, err := keys.Open(ctx, l, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	dir := org.New(l)
	e := &env{t: t, db: db, log: l, svc: objection.New(l),
		mandates: mandate.New(mandate.Config{Issuer: "https://aidants.test.invalid", ConsentLinkTTL: 48 * time.Hour}, l, km)}
	op := audit.Actor{Kind: audit.ActorOperator, ID: "test"}
	for i, o := range []struct{ name, siret, letter string }{{"Organisation A", "98765432100015", "a"}, {"Organisation B", "13579246800013", "b"}} {
		created, err := dir.AddOrganisation(ctx, op, org.NewOrganisation{Name: o.name, SIRET: o.siret, Demarches: []string{"argent", "social", "logement"}})
		if err != nil {
			t.Fatal(err)
		}
		a, err := dir.AddAidant(ctx, op, org.NewAidant{OrganisationID: created.ID, Email: "aidant-" + o.letter + "@example.org",
			GivenName: "Camille", FamilyName: "Martin", HabilitatedUntil: "2099-12-31", Aidant: true})
		if err != nil {
			t.Fatal(err)
		}
		ref, err := dir.AddAidant(ctx, op, org.NewAidant{OrganisationID: created.ID, Email: "referent-" + o.letter + "@example.org",
			GivenName: "Rémi", FamilyName: "Durand", HabilitatedUntil: "2099-12-31", Referent: true})
		if err != nil {
			t.Fatal(err)
		}
		act := mandate.Actor{AidantID: a.ID, OrganisationID: created.ID}
		if i == 0 {
			e.a, e.refA = act, ref.ID
		} else {
			e.b = act
		}
	}
	e.fcKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.m = e.onSite("sub-josephine", "josephine@example.org")
	e.other = e.onSite("sub-paul", "paul@example.org")
	e.action = e.used(e.m)
	e.otherAct = e.used(e.other)
	return e
}

func (e *env) onSite(sub, email string) *mandate.Mandate {
	e.t.Helper()
	ctx := context.Background()
	d, _, err := e.mandates.CreateDraft(ctx, e.a, mandate.NewDraft{Demarches: []string{"argent", "social"}, Duration: "1m", Method: mandate.OnSite})
	if err != nil {
		e.t.Fatal(err)
	}
	claims := map[string]any{"iss": fcIssuer, "sub": sub, "aud": "aidants", "nonce": d.Nonce(), "acr": "eidas1",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(), "email": email,
		"given_name": "Joséphine Marie", "family_name": "Lefèvre", "birthdate": "1948-03-12", "gender": "female"}
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: e.fcKey, KeyID: "fc1"}}, nil)
	payload, _ := json.Marshal(claims)
	obj, _ := signer.Sign(payload)
	raw, _ := obj.CompactSerialize()
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: &e.fcKey.PublicKey, KeyID: "fc1", Algorithm: "ES256", Use: "sig"})
	ev := mandate.Evidence{Issuer: fcIssuer, Subject: sub, Nonce: d.Nonce(), Claims: claims, RawIDToken: raw, JWK: string(jwk)}
	if _, err := e.mandates.Identify(ctx, d.ID, "", ev); err != nil {
		e.t.Fatal(err)
	}
	m, err := e.mandates.ConfirmOnSite(ctx, e.a, d.ID, true, true)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// used journals an action taken with m at a service, as the provider
// does.
func (e *env) used(m *mandate.Mandate) int64 {
	e.t.Helper()
	if err := e.log.Write(context.Background(), func(tx *audit.Tx) error {
		_, err := tx.Exec(`INSERT INTO services (id, name, redirect_uris, demarches, auth_method, created_at) VALUES (?, ?, '', 'social', 'client_secret_basic', ?)
			ON CONFLICT DO NOTHING`, "svc_demo", "Service démo", store.T(tx.Now()))
		return err
	}); err != nil {
		e.t.Fatalf("service row: %v", err)
	}
	var idx int64
	err := e.log.Write(context.Background(), func(tx *audit.Tx) error {
		var err error
		idx, err = tx.Append(audit.Event{Type: audit.MandateUsed, Actor: audit.Actor{Kind: audit.ActorAidant, ID: e.a.AidantID},
			Aidant: e.a.AidantID, Organisation: m.OrganisationID, Usager: m.UsagerID, Mandate: m.ID, Service: "svc_demo", Demarches: []string{"social"}})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return idx
}

func (e *env) count(q string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.R.Get(&n, e.db.Rebind(q), args...); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) events() int { return e.count(`SELECT COUNT(*) FROM audit_events`) }

// mails returns the text bodies queued for to.
func (e *env) mails(to string) []string {
	e.t.Helper()
	var out []string
	if err := e.db.R.Select(&out, e.db.Rebind(`SELECT subject || '\n' || text_body FROM mail_outbox WHERE recipient = ? ORDER BY created_at`), to); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func lastEvent(t *testing.T, e *env, typ string) audit.Event {
	t.Helper()
	var body []byte
	if err := e.db.R.Get(&body, e.db.Rebind(`SELECT body FROM audit_events WHERE type = ? ORDER BY idx DESC LIMIT 1`), typ); err != nil {
		t.Fatalf("no %s: %v", typ, err)
	}
	ev, err := audit.ParseEvent(body)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestObjectionWithdrawsTellsReferentsAndIsRecordedOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		text := "Je ne connais pas cette dame, je n'étais pas là ce jour-là."
		o, err := e.svc.Object(ctx, e.m.UsagerID, e.action, "inconnu", text, true)
		if err != nil || !o.Withdrew {
			t.Fatalf("object: %+v %v", o, err)
		}
		ev := lastEvent(t, e, audit.UsagerObjected)
		if ev.Usager != e.m.UsagerID || ev.Mandate != e.m.ID || ev.Organisation != e.m.OrganisationID || ev.Aidant != e.a.AidantID || ev.Reason != "inconnu" {
			t.Errorf("usager.objected: %+v", ev)
		}
		hash, _ := ev.Detail[audit.FreeTextKey].(string)
		if detailInt(ev, "action") != e.action || hash == "" {
			t.Errorf("usager.objected detail: %v", ev.Detail)
		}
		if stored, err := audit.FreeTextOf(ctx, db, hash); err != nil || stored != text {
			t.Errorf("the text is not kept erasable: %q %v", stored, err)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_events WHERE body LIKE ?`, "%cette dame%"); n != 0 {
			t.Errorf("the free text is in %d events", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM objections WHERE text_hash = ?`, hash); n != 1 {
			t.Errorf("the objection row does not hold the text's hash (%d)", n)
		}
		// Withdrawn in the same unit, by the person.
		if rev := lastEvent(t, e, audit.MandateRevoked); rev.Mandate != e.m.ID || rev.Actor.Kind != audit.ActorUsager {
			t.Errorf("mandate.revoked: %+v", rev)
		}
		// The référent of A is told, without the person's words; not B's.
		msgs := e.mails("referent-a@example.org")
		if len(msgs) != 1 || !strings.Contains(msgs[0], "https://aidants.test.invalid/structure/objections/") {
			t.Errorf("the référent's message: %q", msgs)
		}
		for _, m := range msgs {
			for _, bad := range []string{"cette dame", "usa_", "man_", "aid_", "org_"} {
				if strings.Contains(m, bad) {
					t.Errorf("the référent's message holds %q", bad)
				}
			}
		}
		if n := len(e.mails("referent-b@example.org")); n != 0 {
			t.Errorf("B's référent got %d messages", n)
		}
		// A second objection on the same action is refused, nothing changes.
		before := e.events()
		if _, err := e.svc.Object(ctx, e.m.UsagerID, e.action, "pas_demande", "", false); !errors.Is(err, objection.ErrObjected) ||
			e.events() != before || e.count(`SELECT COUNT(*) FROM objections`) != 1 {
			t.Fatalf("a second objection: %v", err)
		}
		objs, _, err := e.svc.ForUsager(ctx, e.m.UsagerID)
		if err != nil || objs[e.action] == nil || objs[e.action].Text != text || !objs[e.action].Withdrew || !objs[e.action].HandledAt.IsZero() {
			t.Fatalf("ForUsager: %+v %v", objs, err)
		}
	})
}

func TestObjectionRefusalsChangeNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		var created int64
		if err := db.R.Get(&created, db.Rebind(`SELECT idx FROM audit_events WHERE type = ? AND mandate_id = ?`), audit.MandateCreated, e.m.ID); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name   string
			index  int64
			reason string
			text   string
			want   error
		}{
			{"another person's action", e.otherAct, "inconnu", "", audit.ErrOtherUsager},
			{"an unknown index", 99999, "inconnu", "", audit.ErrNotFound},
			{"not an action", created, "inconnu", "", objection.ErrNotAction},
			{"a wrong reason", e.action, "n_importe_quoi", "", objection.ErrReason},
			{"no reason", e.action, "", "", objection.ErrReason},
			{"other without text", e.action, objection.ReasonOther, "", objection.ErrText},
			{"a text too long", e.action, "inconnu", strings.Repeat("a", 2001), objection.ErrText},
		}
		for _, c := range cases {
			before := e.events()
			_, err := e.svc.Object(ctx, e.m.UsagerID, c.index, c.reason, c.text, true)
			if !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
			if e.events() != before || e.count(`SELECT COUNT(*) FROM objections`) != 0 || e.count(`SELECT COUNT(*) FROM free_texts`) != 0 {
				t.Errorf("%s changed something", c.name)
			}
		}
		if e.count(`SELECT COUNT(*) FROM mandates WHERE revoked_at IS NOT NULL`) != 0 {
			t.Error("a refused objection withdrew a mandate")
		}
	})
}

func TestReferentAnswersOnlyTheirOrganisationsObjectionOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		o, err := e.svc.Object(ctx, e.m.UsagerID, e.action, "pas_demande", "", false)
		if err != nil {
			t.Fatal(err)
		}
		before := e.events()
		if err := e.svc.Handle(ctx, e.b.AidantID, e.b.OrganisationID, o.ID, "Vu."); !errors.Is(err, objection.ErrOtherOrg) {
			t.Errorf("another organisation answers: %v", err)
		}
		if _, err := e.svc.Get(ctx, e.b.OrganisationID, o.ID); !errors.Is(err, objection.ErrOtherOrg) {
			t.Errorf("another organisation reads: %v", err)
		}
		if err := e.svc.Handle(ctx, e.refA, e.a.OrganisationID, o.ID, " "); !errors.Is(err, objection.ErrText) {
			t.Errorf("an empty answer: %v", err)
		}
		if err := e.svc.Handle(ctx, e.refA, e.a.OrganisationID, "obj_inconnu", "Vu."); !errors.Is(err, objection.ErrNotFound) {
			t.Errorf("an unknown objection: %v", err)
		}
		if e.events() != before {
			t.Fatal("a refused answer was journaled")
		}
		answer := "Nous avons appelé le service : la démarche est annulée."
		if err := e.svc.Handle(ctx, e.refA, e.a.OrganisationID, o.ID, answer); err != nil {
			t.Fatal(err)
		}
		ev := lastEvent(t, e, audit.ObjectionHandled)
		if ev.Actor.ID != e.refA || ev.Usager != e.m.UsagerID || ev.Detail[audit.FreeTextKey] == nil || strings.Contains(string(mustJSON(ev)), "annulée") {
			t.Errorf("objection.handled: %+v", ev)
		}
		if err := e.svc.Handle(ctx, e.refA, e.a.OrganisationID, o.ID, "Encore."); !errors.Is(err, objection.ErrHandled) {
			t.Errorf("a second answer: %v", err)
		}
		objs, _, _ := e.svc.ForUsager(ctx, e.m.UsagerID)
		if v := objs[e.action]; v == nil || v.HandledAt.IsZero() || v.Answer != answer {
			t.Errorf("the person does not see the answer: %+v", v)
		}
		if n := len(e.mails("josephine@example.org")); n < 3 { // signed, action, answer
			t.Errorf("the person was not told of the answer: %q", e.mails("josephine@example.org"))
		}
	})
}

func detailInt(ev audit.Event, key string) int64 {
	n, _ := ev.Detail[key].(json.Number)
	i, _ := n.Int64()
	return i
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

func TestErrorDeclaredByTheOrganisationOnlyAndCompletedNeverEdited(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		what, fix := "J'ai déclaré le mauvais logement.", "J'ai corrigé la déclaration avec la personne."
		before := e.events()
		if _, err := e.svc.Declare(ctx, e.b, e.action, what, fix, ""); !errors.Is(err, objection.ErrOtherOrg) {
			t.Errorf("an aidant of another organisation: %v", err)
		}
		if _, err := e.svc.Declare(ctx, e.a, e.action, what, "", ""); !errors.Is(err, objection.ErrText) {
			t.Errorf("without what was done: %v", err)
		}
		if _, err := e.svc.Declare(ctx, e.a, e.action, " ", fix, ""); !errors.Is(err, objection.ErrText) {
			t.Errorf("without what went wrong: %v", err)
		}
		if _, err := e.svc.Declare(ctx, e.a, 99999, what, fix, ""); !errors.Is(err, audit.ErrNotFound) {
			t.Errorf("an unknown action: %v", err)
		}
		if e.events() != before || e.count(`SELECT COUNT(*) FROM free_texts`) != 0 {
			t.Fatal("a refused declaration changed something")
		}
		first, err := e.svc.Declare(ctx, e.a, e.action, what, fix, "")
		if err != nil {
			t.Fatal(err)
		}
		ev := lastEvent(t, e, audit.ActionErrorDeclared)
		if ev.Aidant != e.a.AidantID || ev.Usager != e.m.UsagerID || ev.Mandate != e.m.ID || ev.Detail["what_sha256"] == nil || ev.Detail["fix_sha256"] == nil ||
			detailInt(ev, "action") != e.action || strings.Contains(string(mustJSON(ev)), "logement.") {
			t.Errorf("action.error_declared: %+v", ev)
		}
		// A complement, linked to the first; one that claims another
		// action's declaration is refused.
		otherDecl, err := e.svc.Declare(ctx, e.a, e.otherAct, "Autre.", "Corrigé.", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Declare(ctx, e.a, e.action, "x", "y", otherDecl.ID); !errors.Is(err, objection.ErrDeclaredOn) {
			t.Errorf("a complement of another action's declaration: %v", err)
		}
		if _, err := e.svc.Declare(ctx, e.a, e.action, "Le montant était faux aussi.", "Corrigé le lendemain.", first.ID); err != nil {
			t.Fatal(err)
		}
		if ev := lastEvent(t, e, audit.ActionErrorDeclared); ev.Detail["completes"] != first.ID {
			t.Errorf("the complement: %+v", ev)
		}
		_, decls, err := e.svc.ForUsager(ctx, e.m.UsagerID)
		if err != nil || len(decls[e.action]) != 2 || decls[e.action][0].What != what || decls[e.action][1].Completes == nil || *decls[e.action][1].Completes != first.ID {
			t.Fatalf("ForUsager: %+v %v", decls, err)
		}
		var told int
		for _, m := range e.mails("josephine@example.org") {
			for _, bad := range []string{"usa_", "man_", "aid_", "org_", "err_"} {
				if strings.Contains(m, bad) {
					t.Errorf("the person's message holds %q", bad)
				}
			}
			if strings.Contains(m, "Camille Martin") && strings.Contains(strings.ToLower(m), "erreur") {
				told++
			}
		}
		if told != 2 {
			t.Errorf("the person was told of %d declarations, want 2", told)
		}
	})
}

func TestActionMailsSwitchIsJournaledAndStopsActionMessages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		before := len(e.mails("josephine@example.org"))
		if err := notify.SetActionMails(ctx, e.log, e.m.UsagerID, false); err != nil {
			t.Fatal(err)
		}
		if ev := lastEvent(t, e, audit.UsagerNotificationsChanged); ev.Detail["action_mails"] != false || ev.Usager != e.m.UsagerID {
			t.Errorf("usager.notifications_changed: %+v", ev)
		}
		n := e.events()
		if err := notify.SetActionMails(ctx, e.log, e.m.UsagerID, false); err != nil || e.events() != n {
			t.Error("turning off what is off was journaled")
		}
		e.used(e.m)
		if got := len(e.mails("josephine@example.org")); got != before || e.count(`SELECT COUNT(*) FROM mail_actions`) != 0 {
			t.Errorf("an action message left, or waits, while they are off (%d → %d)", before, got)
		}
		if on, reachable, _ := notify.ActionMails(ctx, db, e.m.UsagerID); on || !reachable {
			t.Errorf("ActionMails: on %v, reachable %v", on, reachable)
		}
		if err := notify.SetActionMails(ctx, e.log, e.m.UsagerID, true); err != nil {
			t.Fatal(err)
		}
		// On again: the next action, within the hour of the first one's
		// message, waits for the grouped message.
		e.used(e.m)
		if n := e.count(`SELECT COUNT(*) FROM mail_actions WHERE usager_id = ?`, e.m.UsagerID); n != 1 {
			t.Errorf("turned on again, %d actions wait for the grouped message, want 1", n)
		}
	})
}

func TestObjectionOnAWithdrawnMandateSaysItWithdrewNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		by := audit.Actor{Kind: audit.ActorUsager, ID: e.m.UsagerID}
		if err := e.mandates.Revoke(ctx, mandate.Revocation{By: by, UsagerID: e.m.UsagerID, MandateID: e.m.ID, Reason: mandate.ReasonByPerson}); err != nil {
			t.Fatal(err)
		}
		o, err := e.svc.Object(ctx, e.m.UsagerID, e.action, "inconnu", "", true)
		if err != nil {
			t.Fatal(err)
		}
		if o.Withdrew || e.count(`SELECT COUNT(*) FROM objections WHERE withdrew`) != 0 {
			t.Error("the objection says it withdrew a mandate already withdrawn")
		}
		if ev := lastEvent(t, e, audit.UsagerObjected); ev.Detail["withdrew"] != nil {
			t.Errorf("usager.objected: %v", ev.Detail)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_events WHERE type = ?`, audit.MandateRevoked); n != 1 {
			t.Errorf("%d mandate.revoked events, want 1", n)
		}
		if msgs := e.mails("referent-a@example.org"); len(msgs) != 1 || strings.Contains(msgs[0], "retiré son mandat") {
			t.Errorf("the référent's message: %q", msgs)
		}
	})
}
