package mandate_test

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/keys"
	"aidants/mandate"
	"aidants/org"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// clock is a test clock shared by the log and the service.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time      { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) add(d time.Duration) { c.off.Add(int64(d)) }

// env is a database with two organisations, an aidant in each, and the
// mandate service.
type env struct {
	t     *testing.T
	db    *store.DB
	log   *audit.Log
	svc   *mandate.Service
	dir   *org.Directory
	clock *clock
	a, b  mandate.Actor // an aidant of organisation A, one of B
	fcKey *ecdsa.PrivateKey
}

const fcIssuer = "https://franceconnect.test.invalid"

func newEnv(t *testing.T, db *store.DB) *env {
	t.Helper()
	ctx := context.Background()
	c := &clock{}
	skey, _ := audit.GenerateKey("test.invalid/audit")
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: skey, Now: c.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	km, err := keys.Open(ctx, l, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	dir := org.New(l)
	e := &env{t: t, db: db, log: l, dir: dir, clock: c,
		svc: mandate.New(mandate.Config{Issuer: "https://aidants.test.invalid", ConsentLinkTTL: 48 * time.Hour}, l, km)}
	op := audit.Actor{Kind: audit.ActorOperator, ID: "test"}
	for i, o := range []struct{ name, siret string }{{"Organisation A", "98765432100015"}, {"Organisation B", "13579246800013"}} {
		created, err := dir.AddOrganisation(ctx, op, org.NewOrganisation{Name: o.name, SIRET: o.siret, Demarches: []string{"argent", "social", "logement"}})
		if err != nil {
			t.Fatal(err)
		}
		a, err := dir.AddAidant(ctx, op, org.NewAidant{OrganisationID: created.ID, Email: strings.ToLower(string(rune('a'+i))) + "@example.org",
			GivenName: "Camille", FamilyName: "Martin", HabilitatedUntil: "2099-12-31", Aidant: true})
		if err != nil {
			t.Fatal(err)
		}
		act := mandate.Actor{AidantID: a.ID, OrganisationID: created.ID}
		if i == 0 {
			e.a = act
		} else {
			e.b = act
		}
	}
	e.fcKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return e
}

// evidence is a FranceConnect authentication of person sub, signed by the
// test provider key, carrying nonce.
func (e *env) evidence(sub, nonce string) mandate.Evidence {
	e.t.Helper()
	claims := map[string]any{"iss": fcIssuer, "sub": sub, "aud": "aidants", "nonce": nonce, "acr": "eidas1",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
		"given_name": "Joséphine Marie", "family_name": "Lefèvre", "birthdate": "1948-03-12", "gender": "female",
		"birthplace": "44109", "birthcountry": "99100"}
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: e.fcKey, KeyID: "fc1"}}, nil)
	payload, _ := json.Marshal(claims)
	obj, _ := signer.Sign(payload)
	raw, _ := obj.CompactSerialize()
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: &e.fcKey.PublicKey, KeyID: "fc1", Algorithm: "ES256", Use: "sig"})
	return mandate.Evidence{Issuer: fcIssuer, Subject: sub, Nonce: nonce, Claims: claims, RawIDToken: raw, JWK: string(jwk)}
}

// onSite makes an active on-site mandate for person sub.
func (e *env) onSite(a mandate.Actor, sub string, dem ...string) *mandate.Mandate {
	e.t.Helper()
	ctx := context.Background()
	d, _, err := e.svc.CreateDraft(ctx, a, mandate.NewDraft{Demarches: dem, Duration: "1m", Method: mandate.OnSite})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.Identify(ctx, d.ID, "", e.evidence(sub, d.Nonce())); err != nil {
		e.t.Fatal(err)
	}
	m, err := e.svc.ConfirmOnSite(ctx, a, d.ID, true, true)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *env) count(q string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.R.Get(&n, e.db.Rebind(q), args...); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) events(typ string) int {
	return e.count(`SELECT COUNT(*) FROM audit_events WHERE type = ?`, typ)
}

func TestOnSiteMandateIsSignedVerifiableAndJournaled(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		m := e.onSite(e.a, "fc-josephine", "argent", "social")
		v, err := e.svc.Get(context.Background(), e.a.OrganisationID, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if v.Status(time.Now()) != mandate.Active || v.UsagerGiven != "Joséphine Marie" || len(v.ActiveDemarches()) != 2 {
			t.Fatalf("mandate = %+v", v)
		}
		res, err := e.svc.Verify(context.Background(), m.JWS)
		if err != nil || res.Status != mandate.VerifyValid {
			t.Fatalf("verify: %+v %v", res, err)
		}
		if res.Claims.Usager.Sub != m.UsagerID || res.Claims.Org.SIRET != "98765432100015" || res.Claims.Consent.Method != mandate.OnSite {
			t.Fatalf("claims = %+v", res.Claims)
		}
		for _, typ := range []string{audit.MandateDraftCreated, audit.UsagerIdentified, audit.MandateConsentGiven, audit.MandateCreated} {
			if e.events(typ) != 1 {
				t.Errorf("%s: %d events, want 1", typ, e.events(typ))
			}
		}
		if _, err := audit.Verify(context.Background(), db, e.log.VerifierKey(), nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBadProposalsAreRefusedAndChangeNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		before := e.count(`SELECT COUNT(*) FROM audit_events`)
		cases := []struct {
			n    mandate.NewDraft
			want error
		}{
			{mandate.NewDraft{Demarches: []string{"argent", "justice"}, Duration: "1m", Method: mandate.OnSite}, mandate.ErrDemarcheRefused},
			{mandate.NewDraft{Demarches: []string{"cuisine"}, Duration: "1m", Method: mandate.OnSite}, mandate.ErrDemarcheRefused},
			{mandate.NewDraft{Demarches: nil, Duration: "1m", Method: mandate.OnSite}, mandate.ErrNoDemarche},
			{mandate.NewDraft{Demarches: []string{"argent"}, Duration: "10a", Method: mandate.OnSite}, mandate.ErrBadDuration},
			{mandate.NewDraft{Demarches: []string{"argent"}, Duration: "1m", Method: "carrier-pigeon"}, mandate.ErrBadMethod},
		}
		for _, c := range cases {
			if _, _, err := e.svc.CreateDraft(context.Background(), e.a, c.n); !errors.Is(err, c.want) {
				t.Errorf("%+v: err = %v, want %v", c.n, err, c.want)
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM mandate_drafts`); n != 0 {
			t.Errorf("%d drafts were stored", n)
		}
		if after := e.count(`SELECT COUNT(*) FROM audit_events`); after != before {
			t.Errorf("events went from %d to %d", before, after)
		}
	})
}

func TestForeignNonceIsRefused(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	ctx := context.Background()
	d, _, _ := e.svc.CreateDraft(ctx, e.a, mandate.NewDraft{Demarches: []string{"argent"}, Duration: "1m", Method: mandate.OnSite})
	other, _, _ := e.svc.CreateDraft(ctx, e.a, mandate.NewDraft{Demarches: []string{"social"}, Duration: "1m", Method: mandate.OnSite})
	// The person authenticated for another draft.
	if _, err := e.svc.Identify(ctx, d.ID, "", e.evidence("fc-josephine", other.Nonce())); !errors.Is(err, mandate.ErrNonce) {
		t.Fatalf("err = %v, want ErrNonce", err)
	}
	got, _ := e.svc.Draft(ctx, e.a, d.ID)
	if got.Status != mandate.DraftPending || got.UsagerID != "" || e.count(`SELECT COUNT(*) FROM usagers`) != 0 {
		t.Fatalf("the refused identification changed the draft: %+v", got)
	}
	if _, err := e.svc.ConfirmOnSite(ctx, e.a, d.ID, true, true); !errors.Is(err, mandate.ErrDraftState) {
		t.Fatalf("confirm without identification: %v", err)
	}
}

func TestAnotherOrganisationCannotSeeOrUseADraftOrAMandate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		d, _, _ := e.svc.CreateDraft(ctx, e.a, mandate.NewDraft{Demarches: []string{"argent"}, Duration: "1m", Method: mandate.OnSite})
		if _, err := e.svc.Draft(ctx, e.b, d.ID); !errors.Is(err, mandate.ErrOtherOrganisation) {
			t.Errorf("Draft: %v", err)
		}
		e.svc.Identify(ctx, d.ID, "", e.evidence("fc-josephine", d.Nonce()))
		if _, err := e.svc.ConfirmOnSite(ctx, e.b, d.ID, true, true); !errors.Is(err, mandate.ErrOtherOrganisation) {
			t.Errorf("ConfirmOnSite: %v", err)
		}
		m, err := e.svc.ConfirmOnSite(ctx, e.a, d.ID, true, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Get(ctx, e.b.OrganisationID, m.ID); !errors.Is(err, mandate.ErrOtherOrganisation) {
			t.Errorf("Get: %v", err)
		}
		err = e.svc.Revoke(ctx, mandate.Revocation{By: audit.Actor{Kind: audit.ActorAidant, ID: e.b.AidantID}, OrganisationID: e.b.OrganisationID,
			MandateID: m.ID, Reason: "erreur"})
		if !errors.Is(err, mandate.ErrOtherOrganisation) {
			t.Errorf("Revoke: %v", err)
		}
		if _, _, err := e.svc.Renew(ctx, e.b, m.ID, "1m", mandate.OnSite); !errors.Is(err, mandate.ErrOtherOrganisation) {
			t.Errorf("Renew: %v", err)
		}
		if v, _ := e.svc.Get(ctx, e.a.OrganisationID, m.ID); v.Status(time.Now()) != mandate.Active {
			t.Fatal("another organisation's attempts changed the mandate")
		}
		if ms, _ := e.svc.Mandates(ctx, e.b.OrganisationID, ""); len(ms) != 0 {
			t.Fatalf("organisation B lists %d mandates of A", len(ms))
		}
	})
}

func TestRemoteLinkServesOnceAndExpires(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	ctx := context.Background()
	d, link, err := e.svc.CreateDraft(ctx, e.a, mandate.NewDraft{Demarches: []string{"logement"}, Duration: "6m", Method: mandate.Remote})
	if err != nil || link == "" {
		t.Fatalf("remote draft: %v", err)
	}
	if e.events(audit.MandateConsentLinkCreated) != 1 {
		t.Fatal("no mandate.consent_link_created")
	}
	if _, err := e.svc.Identify(ctx, d.ID, "not-the-link", e.evidence("fc-ahmed", d.Nonce())); !errors.Is(err, mandate.ErrLinkUsed) {
		t.Fatalf("identify with a wrong link: %v", err)
	}
	usager, err := e.svc.Identify(ctx, d.ID, link, e.evidence("fc-ahmed", d.Nonce()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AcceptRemote(ctx, link, "usa_someone_else"); !errors.Is(err, mandate.ErrDraftState) {
		t.Fatalf("accept as another person: %v", err)
	}
	m, err := e.svc.AcceptRemote(ctx, link, usager)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e.svc.Get(ctx, e.a.OrganisationID, m.ID); v.Status(time.Now()) != mandate.Active || v.Method != mandate.Remote {
		t.Fatalf("remote mandate = %+v", v)
	}
	// The link has served.
	if _, err := e.svc.AcceptRemote(ctx, link, usager); !errors.Is(err, mandate.ErrLinkUsed) {
		t.Fatalf("reused link: %v", err)
	}
	if err := e.svc.RefuseRemote(ctx, link, usager); !errors.Is(err, mandate.ErrLinkUsed) {
		t.Fatalf("refuse after accept: %v", err)
	}
	// A refused one, and an expired one.
	d2, link2, _ := e.svc.CreateDraft(ctx, e.a, mandate.NewDraft{Demarches: []string{"social"}, Duration: "1j", Method: mandate.Remote})
	if err := e.svc.RefuseRemote(ctx, link2, ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.Draft(ctx, e.a, d2.ID); got.Status != mandate.DraftRefused || e.events(audit.MandateConsentRefused) != 1 {
		t.Fatalf("refused draft: %+v", got)
	}
	d3, link3, _ := e.svc.CreateDraft(ctx, e.a, mandate.NewDraft{Demarches: []string{"social"}, Duration: "1j", Method: mandate.Remote})
	e.clock.add(49 * time.Hour)
	if _, err := e.svc.Identify(ctx, d3.ID, link3, e.evidence("fc-lucie", d3.Nonce())); !errors.Is(err, mandate.ErrDraftExpired) {
		t.Fatalf("expired link: %v", err)
	}
	if got, _ := e.svc.Draft(ctx, e.a, d3.ID); got.State(e.clock.now()) != mandate.DraftExpired {
		t.Fatalf("draft state %q, want expired", got.State(e.clock.now()))
	}
}

func TestRevocationBitesAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		m := e.onSite(e.a, "fc-josephine", "argent", "social")
		by := audit.Actor{Kind: audit.ActorAidant, ID: e.a.AidantID}
		use := func(dem string) error {
			return e.log.Write(ctx, func(tx *audit.Tx) error { _, err := mandate.ActiveFor(tx, m.ID, dem); return err })
		}
		if err := use("argent"); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []struct {
			reason, text string
			want         error
		}{
			{" ", "", mandate.ErrReason},
			{"n'en a plus besoin", "", mandate.ErrReason},   // text where a code is expected
			{mandate.ReasonByPerson, "", mandate.ErrReason}, // the person's, not the aidant's
			{mandate.ReasonOther, "  ", mandate.ErrReasonText},
			{"erreur", strings.Repeat("x", 2001), mandate.ErrReasonText},
		} {
			if err := e.svc.Revoke(ctx, mandate.Revocation{By: by, OrganisationID: e.a.OrganisationID, MandateID: m.ID, Demarche: "argent",
				Reason: bad.reason, Text: bad.text}); !errors.Is(err, bad.want) {
				t.Fatalf("reason %q, text of %d bytes: %v, want %v", bad.reason, len(bad.text), err, bad.want)
			}
		}
		if err := e.svc.Revoke(ctx, mandate.Revocation{By: by, OrganisationID: e.a.OrganisationID, MandateID: m.ID, Demarche: "argent", Reason: "plus_necessaire"}); err != nil {
			t.Fatal(err)
		}
		if err := use("argent"); !errors.Is(err, mandate.ErrRevoked) {
			t.Fatalf("use of a revoked démarche: %v", err)
		}
		if err := use("social"); err != nil {
			t.Fatalf("use of the démarche still in force: %v", err)
		}
		if res, _ := e.svc.Verify(ctx, m.JWS); res.Status != mandate.VerifyValid || len(res.Revoked) != 1 {
			t.Fatalf("verify after one démarche: %+v", res)
		}
		const text = "La personne est entrée en maison de retraite"
		if err := e.svc.Revoke(ctx, mandate.Revocation{By: by, OrganisationID: e.a.OrganisationID, MandateID: m.ID, Reason: mandate.ReasonOther, Text: text}); err != nil {
			t.Fatal(err)
		}
		// The code is journaled; the text is kept erasable, and the event
		// and the mandate carry only its hash.
		var body string
		if err := db.R.Get(&body, db.Rebind(`SELECT body FROM audit_events WHERE body LIKE ?`), "%mandate.revoked%"); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(body, "retraite") || !strings.Contains(body, `"reason":"autre"`) {
			t.Fatalf("mandate.revoked event: %s", body)
		}
		v, _ := e.svc.Get(ctx, e.a.OrganisationID, m.ID)
		if got, err := audit.FreeTextOf(ctx, db, v.RevokeText); err != nil || got != text || !strings.Contains(body, v.RevokeText) {
			t.Fatalf("the reason's text: %q, %v (hash %q in %s)", got, err, v.RevokeText, body)
		}
		if err := use("social"); !errors.Is(err, mandate.ErrRevoked) {
			t.Fatalf("use after whole revocation: %v", err)
		}
		if res, _ := e.svc.Verify(ctx, m.JWS); res.Status != mandate.VerifyRevoked {
			t.Fatalf("verify after revocation: %+v", res)
		}
		if err := e.svc.Revoke(ctx, mandate.Revocation{By: by, OrganisationID: e.a.OrganisationID, MandateID: m.ID, Reason: "erreur"}); !errors.Is(err, mandate.ErrRevoked) {
			t.Fatalf("revoke twice: %v", err)
		}
		if e.events(audit.MandateDemarcheRevoked) != 1 || e.events(audit.MandateRevoked) != 1 {
			t.Fatal("revocations not journaled once each")
		}
	})
}

func TestNewMandateSupersedesTheOldOneForTheSameDemarche(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	ctx := context.Background()
	old := e.onSite(e.a, "fc-josephine", "argent", "social")
	recent := e.onSite(e.a, "fc-josephine", "argent")
	v, _ := e.svc.Get(ctx, e.a.OrganisationID, old.ID)
	if got := v.ActiveDemarches(); len(got) != 1 || got[0] != "social" {
		t.Fatalf("old mandate still covers %v, want [social]", got)
	}
	if v2, _ := e.svc.Get(ctx, e.a.OrganisationID, recent.ID); v2.Status(time.Now()) != mandate.Active {
		t.Fatal("the new mandate is not active")
	}
	if e.events(audit.MandateSuperseded) != 1 {
		t.Fatal("no mandate.superseded")
	}
	// Another person's mandate, and another organisation's, are untouched.
	e.onSite(e.a, "fc-ahmed", "argent")
	e.onSite(e.b, "fc-josephine", "social")
	if v, _ := e.svc.Get(ctx, e.a.OrganisationID, old.ID); len(v.ActiveDemarches()) != 1 {
		t.Fatal("someone else's mandate superseded this one")
	}
}

func TestRenewalMustBeAcceptedByTheSamePerson(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	ctx := context.Background()
	m := e.onSite(e.a, "fc-josephine", "argent")
	d, _, err := e.svc.Renew(ctx, e.a, m.ID, "1a", mandate.OnSite)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Identify(ctx, d.ID, "", e.evidence("fc-someone-else", d.Nonce())); !errors.Is(err, mandate.ErrWrongPerson) {
		t.Fatalf("renewal by another person: %v", err)
	}
	if _, err := e.svc.Identify(ctx, d.ID, "", e.evidence("fc-josephine", d.Nonce())); err != nil {
		t.Fatal(err)
	}
	renewed, err := e.svc.ConfirmOnSite(ctx, e.a, d.ID, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if e.events(audit.MandateRenewed) != 1 || e.events(audit.MandateSuperseded) != 1 {
		t.Fatal("renewal not journaled")
	}
	if v, _ := e.svc.Get(ctx, e.a.OrganisationID, m.ID); v.Status(time.Now()) != mandate.Revoked {
		t.Fatalf("the renewed mandate is %s, want superseded (revoked)", v.Status(time.Now()))
	}
	if v, _ := e.svc.Get(ctx, e.a.OrganisationID, renewed.ID); v.Renews != m.ID {
		t.Fatalf("renewal does not name the mandate it renews: %q", v.Renews)
	}
	if _, _, err := e.svc.Renew(ctx, e.a, m.ID, "1a", mandate.OnSite); !errors.Is(err, mandate.ErrNotRenewable) {
		t.Fatalf("renewing a superseded mandate: %v", err)
	}
}

func TestExpiryIsDerivedFromTime(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	ctx := context.Background()
	m := e.onSite(e.a, "fc-josephine", "argent")
	e.clock.add(32 * 24 * time.Hour) // "1 mois" is 31 days
	v, _ := e.svc.Get(ctx, e.a.OrganisationID, m.ID)
	if v.Status(e.clock.now()) != mandate.Expired {
		t.Fatalf("status %s, want expired", v.Status(e.clock.now()))
	}
	err := e.log.Write(ctx, func(tx *audit.Tx) error { _, err := mandate.ActiveFor(tx, m.ID, "argent"); return err })
	if !errors.Is(err, mandate.ErrExpired) {
		t.Fatalf("use of an expired mandate: %v", err)
	}
	if res, _ := e.svc.Verify(ctx, m.JWS); res.Status != mandate.VerifyExpired {
		t.Fatalf("verify: %+v", res)
	}
	if ms, _ := e.svc.Mandates(ctx, e.a.OrganisationID, mandate.Expired); len(ms) != 1 {
		t.Fatal("the expired filter does not list it")
	}
}

func TestNonceCanBeRecomputedFromTheStoredEvidenceAlone(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	m := e.onSite(e.a, "fc-josephine", "argent")
	var stored struct {
		JWS   string `db:"jws"`
		Token string `db:"evidence_token"`
		JWK   string `db:"evidence_jwk"`
	}
	if err := e.db.R.Get(&stored, `SELECT jws, evidence_token, evidence_jwk FROM mandates WHERE id = ?`, m.ID); err != nil {
		t.Fatal(err)
	}
	// draft_digest and salt from the signed mandate's payload.
	obj, err := jose.ParseSigned(stored.JWS, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims mandate.Claims
	json.Unmarshal(obj.UnsafePayloadWithoutVerification(), &claims)
	want, err := mandate.ConsentNonce(claims.DraftDigest, claims.Salt)
	if err != nil {
		t.Fatal(err)
	}
	// The FranceConnect token verifies with the stored key, and carries it.
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON([]byte(stored.JWK)); err != nil {
		t.Fatal(err)
	}
	tok, err := jose.ParseSigned(stored.Token, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := tok.Verify(key)
	if err != nil {
		t.Fatalf("the evidence does not verify with the stored key: %v", err)
	}
	var idt struct {
		Nonce string `json:"nonce"`
	}
	json.Unmarshal(payload, &idt)
	if idt.Nonce != want {
		t.Fatalf("nonce %q in the evidence, recomputed %q", idt.Nonce, want)
	}
}

func TestIncompleteIdentityIsRefusedNamingTheMissingClaims(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		d, _, err := e.svc.CreateDraft(ctx, e.a, mandate.NewDraft{Demarches: []string{"argent"}, Duration: "1m", Method: mandate.OnSite})
		if err != nil {
			t.Fatal(err)
		}
		ev := e.evidence("fc-josephine", d.Nonce())
		delete(ev.Claims, "birthdate")
		ev.Claims["family_name"] = "  "
		before := e.count(`SELECT COUNT(*) FROM audit_events`)
		_, err = e.svc.Identify(ctx, d.ID, "", ev)
		if !errors.Is(err, mandate.ErrIdentity) || !strings.HasSuffix(err.Error(), "missing family_name, birthdate") {
			t.Fatalf("err = %v, want ErrIdentity naming family_name and birthdate", err)
		}
		if strings.Contains(err.Error(), "Joséphine") {
			t.Errorf("the error holds the person's name: %v", err)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_events`); n != before || e.count(`SELECT COUNT(*) FROM usagers`) != 0 {
			t.Errorf("a refused identity changed something (%d events)", n-before)
		}
	})
}

// TestDurationsCountCalendarDaysInParis: a mandate signed at 10 h in
// Paris ends at 10 h in Paris, across a change of summer time.
func TestDurationsCountCalendarDaysInParis(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, mandate.Paris) // winter time
	for _, c := range []struct {
		code string
		want time.Time
	}{
		{"1j", time.Date(2026, 3, 2, 10, 0, 0, 0, mandate.Paris)},
		{"1m", time.Date(2026, 4, 1, 10, 0, 0, 0, mandate.Paris)},  // summer time by then
		{"6m", time.Date(2026, 8, 30, 10, 0, 0, 0, mandate.Paris)}, // 182 days
		{"1a", time.Date(2027, 3, 1, 10, 0, 0, 0, mandate.Paris)},  // 365 days
	} {
		d, _ := mandate.LookupDuration(c.code)
		got := d.Until(start.UTC())
		if !got.Equal(c.want) || got.In(mandate.Paris).Hour() != 10 {
			t.Errorf("%s from %v: %v, want %v", c.code, start, got.In(mandate.Paris), c.want)
		}
	}
}
