package keys_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/keys"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var secret = []byte("0123456789abcdef0123456789abcdef")

// clock is a test clock that moves only when told.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time      { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) add(d time.Duration) { c.off.Add(int64(d)) }

// auditKey signs the checkpoints of every log of the tests: the processes
// sharing a database share it.
var auditKey = func() string {
	k, err := audit.GenerateKey("test.invalid/audit")
	if err != nil {
		panic(err)
	}
	return k
}()

func openLog(t *testing.T, db *store.DB, now func() time.Time) *audit.Log {
	t.Helper()
	l, err := audit.Open(context.Background(), db, audit.Options{SigningKey: auditKey, Now: now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// twoProcesses returns two independent connections to one fresh, migrated
// database, as two processes (a server and the command line, or two
// servers) would have.
func twoProcesses(t *testing.T, d store.Dialect) (*store.DB, *store.DB) {
	t.Helper()
	ctx := context.Background()
	driver, dsn := storetest.DSN(t, d)
	a, err := store.Open(ctx, driver, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := store.Open(ctx, driver, dsn, store.Options{NoCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

func eachDialect(t *testing.T, f func(t *testing.T, d store.Dialect)) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) { f(t, d) })
	}
}

func rotatedEvents(t *testing.T, db *store.DB) []audit.Event {
	t.Helper()
	var bodies [][]byte
	if err := db.R.Select(&bodies, db.Rebind(`SELECT body FROM audit_events WHERE type = ? ORDER BY idx`), audit.KeysRotated); err != nil {
		t.Fatal(err)
	}
	evs := make([]audit.Event, len(bodies))
	for i, b := range bodies {
		if err := json.Unmarshal(b, &evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return evs
}

func signingKid(t *testing.T, m *keys.Manager, use keys.Use, alg jose.SignatureAlgorithm) string {
	t.Helper()
	k, err := m.Signing(context.Background(), use, alg)
	if err != nil {
		t.Fatalf("Signing(%s, %s): %v", use, alg, err)
	}
	if k.KeyID == "" || k.Algorithm != string(alg) || k.Use != "sig" || k.IsPublic() {
		t.Fatalf("Signing(%s, %s) = kid %q alg %q use %q public %v", use, alg, k.KeyID, k.Algorithm, k.Use, k.IsPublic())
	}
	return k.KeyID
}

// thirdPartyJWKS is the JWKS as someone fetching it would see it: JSON,
// parsed back.
func thirdPartyJWKS(t *testing.T, m *keys.Manager) (jose.JSONWebKeySet, []byte) {
	t.Helper()
	set, err := m.JWKS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	var parsed jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &parsed); err != nil {
		t.Fatal(err)
	}
	return parsed, raw
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

func sign(t *testing.T, m *keys.Manager, use keys.Use, alg jose.SignatureAlgorithm, typ, payload string) string {
	t.Helper()
	signer, err := m.Signer(context.Background(), use, alg, typ)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	compact, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return compact
}

// verify checks compact against the JWKS by its kid alone, as a third party
// would, and returns the header.
func verify(t *testing.T, set jose.JSONWebKeySet, compact, payload string) jose.Header {
	t.Helper()
	obj, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := obj.Signatures[0].Protected
	found := set.Key(h.KeyID)
	if len(found) != 1 {
		t.Fatalf("kid %q matches %d keys of the JWKS %v", h.KeyID, len(found), kids(set))
	}
	got, err := obj.Verify(found[0])
	if err != nil {
		t.Fatalf("signature by %s does not verify with the published key: %v", h.KeyID, err)
	}
	if string(got) != payload {
		t.Fatalf("payload = %q", got)
	}
	return h
}

func TestOpenCreatesOneCurrentKeyPerUseOnceAndReusesThem(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := openLog(t, db, nil)
		m, err := keys.Open(ctx, l, secret)
		if err != nil {
			t.Fatal(err)
		}
		mk := signingKid(t, m, keys.UseMandate, jose.ES256)
		tk := signingKid(t, m, keys.UseToken, jose.ES256)
		if mk == tk {
			t.Fatal("one key serves both uses")
		}
		set, _ := thirdPartyJWKS(t, m)
		if got := kids(set); !slices.Equal(got, []string{mk, tk}) {
			t.Fatalf("JWKS kids = %v, want [%s %s]", got, mk, tk)
		}
		for _, k := range set.Keys {
			if k.Algorithm != "ES256" || k.Use != "sig" || !k.IsPublic() {
				t.Fatalf("published key %s: alg %q use %q public %v", k.KeyID, k.Algorithm, k.Use, k.IsPublic())
			}
		}
		evs := rotatedEvents(t, db)
		if len(evs) != 1 {
			t.Fatalf("%d keys.rotated events, want 1", len(evs))
		}
		ev := evs[0]
		if ev.Actor != (audit.Actor{Kind: audit.ActorSystem, ID: "keys"}) || ev.Detail["reason"] != "initial" {
			t.Fatalf("event = %+v", ev)
		}
		if got := ev.Detail["new"]; len(got.([]any)) != 2 {
			t.Fatalf("event lists new kids %v", got)
		}

		// Another start on the same database, as after a restart.
		l2 := openLog(t, db, nil)
		m2, err := keys.Open(ctx, l2, secret)
		if err != nil {
			t.Fatal(err)
		}
		if signingKid(t, m2, keys.UseMandate, jose.ES256) != mk || signingKid(t, m2, keys.UseToken, jose.ES256) != tk {
			t.Fatal("a second Open made new keys")
		}
		if n := len(rotatedEvents(t, db)); n != 1 {
			t.Fatalf("%d keys.rotated events after a second Open, want 1", n)
		}
	})
}

func TestMandateSignatureVerifiesWithPublishedJWKSByKid(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		m, err := keys.Open(ctx, openLog(t, db, nil), secret)
		if err != nil {
			t.Fatal(err)
		}
		payload := `{"jti":"man_1"}`
		compact := sign(t, m, keys.UseMandate, jose.ES256, "mandate+jwt", payload)
		set, raw := thirdPartyJWKS(t, m)
		if bytes.Contains(raw, []byte(`"d"`)) {
			t.Fatalf("the JWKS holds a private key: %s", raw)
		}
		h := verify(t, set, compact, payload)
		if h.KeyID != signingKid(t, m, keys.UseMandate, jose.ES256) {
			t.Fatalf("kid %q is not the current mandate key", h.KeyID)
		}
		if h.Algorithm != "ES256" || h.ExtraHeaders[jose.HeaderType] != "mandate+jwt" {
			t.Fatalf("header alg %q typ %v", h.Algorithm, h.ExtraHeaders[jose.HeaderType])
		}
		pub, ok, err := m.Public(ctx, h.KeyID)
		if err != nil || !ok || !pub.IsPublic() {
			t.Fatalf("Public(%s) = %v, %v, public %v", h.KeyID, ok, err, pub.IsPublic())
		}
		if _, ok, err := m.Public(ctx, "no-such-kid"); ok || err != nil {
			t.Fatalf("Public(unknown) = %v, %v", ok, err)
		}
		// Without typ, no typ header.
		obj, _ := jose.ParseSigned(sign(t, m, keys.UseToken, jose.ES256, "", "x"), []jose.SignatureAlgorithm{jose.ES256})
		if _, has := obj.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; has {
			t.Fatal("typ header set though none was asked")
		}
	})
}

func TestRS256TokenKeyIsCreatedOnFirstRequestAndPublished(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		m, err := keys.Open(ctx, openLog(t, db, nil), secret)
		if err != nil {
			t.Fatal(err)
		}
		set, _ := thirdPartyJWKS(t, m)
		for _, k := range set.Keys {
			if k.Algorithm == "RS256" {
				t.Fatal("an RS256 key exists before anyone asked for one")
			}
		}
		jwk, err := m.Signing(ctx, keys.UseToken, jose.RS256)
		if err != nil {
			t.Fatal(err)
		}
		priv, ok := jwk.Key.(*rsa.PrivateKey)
		if !ok || priv.N.BitLen() < 3072 || jwk.Algorithm != "RS256" || jwk.Use != "sig" {
			t.Fatalf("RS256 key: %T alg %q use %q", jwk.Key, jwk.Algorithm, jwk.Use)
		}
		if again := signingKid(t, m, keys.UseToken, jose.RS256); again != jwk.KeyID {
			t.Fatalf("second request gave kid %s, first %s", again, jwk.KeyID)
		}
		payload := `{"sub":"x"}`
		compact := sign(t, m, keys.UseToken, jose.RS256, "at+jwt", payload)
		set, _ = thirdPartyJWKS(t, m)
		if h := verify(t, set, compact, payload); h.KeyID != jwk.KeyID || h.Algorithm != "RS256" {
			t.Fatalf("header kid %q alg %q", h.KeyID, h.Algorithm)
		}
		if n := len(rotatedEvents(t, db)); n != 2 {
			t.Fatalf("%d keys.rotated events, want 2 (initial keys, RS256 key)", n)
		}

		for _, c := range []struct {
			use keys.Use
			alg jose.SignatureAlgorithm
		}{{keys.UseMandate, jose.RS256}, {keys.UseMandate, jose.HS256}, {keys.UseToken, jose.PS256}, {"other", jose.ES256}} {
			if _, err := m.Signing(ctx, c.use, c.alg); err == nil {
				t.Errorf("Signing(%s, %s) was accepted", c.use, c.alg)
			}
			if _, err := m.Signer(ctx, c.use, c.alg, ""); err == nil {
				t.Errorf("Signer(%s, %s) was accepted", c.use, c.alg)
			}
		}
	})
}

func TestRotateRetiresKeysThatStayPublishedForTheirUse(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := &clock{}
		m, err := keys.OpenWith(ctx, openLog(t, db, clk.now), secret, clk.now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		oldMandate := signingKid(t, m, keys.UseMandate, jose.ES256)
		oldToken := signingKid(t, m, keys.UseToken, jose.ES256)
		oldRSA := signingKid(t, m, keys.UseToken, jose.RS256)
		mandateJWS := sign(t, m, keys.UseMandate, jose.ES256, "mandate+jwt", "old mandate")
		tokenJWS := sign(t, m, keys.UseToken, jose.ES256, "at+jwt", "old token")

		if _, err := m.Rotate(ctx, audit.Actor{}); err == nil {
			t.Fatal("a rotation without an actor was accepted")
		}
		if signingKid(t, m, keys.UseMandate, jose.ES256) != oldMandate {
			t.Fatal("a failed rotation changed the keys")
		}

		op := audit.Actor{Kind: audit.ActorOperator, ID: "cli"}
		newKids, err := m.Rotate(ctx, op)
		if err != nil {
			t.Fatal(err)
		}
		if len(newKids) != 3 {
			t.Fatalf("new kids %v, want 3 (mandate ES256, token ES256, token RS256)", newKids)
		}
		current := []string{signingKid(t, m, keys.UseMandate, jose.ES256), signingKid(t, m, keys.UseToken, jose.ES256), signingKid(t, m, keys.UseToken, jose.RS256)}
		for _, k := range current {
			if !slices.Contains(newKids, k) {
				t.Fatalf("current kid %s is not one of the new kids %v", k, newKids)
			}
		}
		if h := verify(t, mustJWKS(t, m), sign(t, m, keys.UseMandate, jose.ES256, "mandate+jwt", "new"), "new"); h.KeyID != current[0] {
			t.Fatalf("new mandate signed by %s", h.KeyID)
		}

		set, _ := thirdPartyJWKS(t, m)
		if got := kids(set); len(got) != 6 || !slices.Equal(got[:3], current) {
			t.Fatalf("JWKS kids %v: want the 3 current keys first, then the 3 retired ones", got)
		}
		verify(t, set, mandateJWS, "old mandate")
		verify(t, set, tokenJWS, "old token")

		evs := rotatedEvents(t, db)
		last := evs[len(evs)-1]
		if last.Actor != op || len(last.Detail["new"].([]any)) != 3 || len(last.Detail["retired"].([]any)) != 3 {
			t.Fatalf("rotation event %+v", last)
		}
		for _, k := range []string{oldMandate, oldToken, oldRSA} {
			if !slices.Contains(last.Detail["retired"].([]any), any(k)) {
				t.Fatalf("rotation event does not list retired kid %s: %v", k, last.Detail["retired"])
			}
		}

		published := func(kid string) bool {
			t.Helper()
			_, ok, err := m.Public(ctx, kid)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		clk.add(47 * time.Hour)
		if !published(oldToken) || !published(oldRSA) {
			t.Fatal("a retired token key left the JWKS before 2 days")
		}
		clk.add(2 * time.Hour)
		if published(oldToken) || published(oldRSA) {
			t.Fatal("a retired token key is still published after 2 days")
		}
		if !published(oldMandate) {
			t.Fatal("the retired mandate key is not published 2 days after rotation")
		}
		set, _ = thirdPartyJWKS(t, m)
		if got := kids(set); len(got) != 4 || slices.Contains(got, oldToken) || !slices.Contains(got, oldMandate) {
			t.Fatalf("JWKS kids after 2 days %v", got)
		}
		verify(t, set, mandateJWS, "old mandate")

		clk.add(399 * 24 * time.Hour)
		if published(oldMandate) {
			t.Fatal("the retired mandate key is still published after 400 days")
		}
		if got := kids(mustJWKS(t, m)); !slices.Equal(got, current) {
			t.Fatalf("JWKS kids after 400 days %v, want %v", got, current)
		}
		// A manager started now (the table read afresh) agrees.
		m2, err := keys.OpenWith(ctx, openLog(t, db, clk.now), secret, clk.now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if got := kids(mustJWKS(t, m2)); !slices.Equal(got, current) {
			t.Fatalf("a new manager publishes %v, want %v", got, current)
		}
	})
}

func mustJWKS(t *testing.T, m *keys.Manager) jose.JSONWebKeySet {
	set, _ := thirdPartyJWKS(t, m)
	return set
}

func TestPrivateKeysAreEncryptedAtRest(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := openLog(t, db, nil)
		m, err := keys.Open(ctx, l, secret)
		if err != nil {
			t.Fatal(err)
		}
		jwk, err := m.Signing(ctx, keys.UseMandate, jose.ES256)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(jwk)
		if err != nil {
			t.Fatal(err)
		}
		var fields struct{ D string }
		if err := json.Unmarshal(raw, &fields); err != nil || fields.D == "" {
			t.Fatalf("no d in the private JWK: %v", err)
		}
		d, err := base64.RawURLEncoding.DecodeString(fields.D)
		if err != nil {
			t.Fatal(err)
		}
		var rows []struct {
			Kid  string `db:"kid"`
			Pub  string `db:"public_jwk"`
			Priv []byte `db:"private_enc"`
		}
		if err := db.R.Select(&rows, `SELECT kid, public_jwk, private_enc FROM signing_keys`); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 {
			t.Fatalf("%d rows", len(rows))
		}
		for _, r := range rows {
			for _, col := range [][]byte{[]byte(r.Pub), r.Priv} {
				if bytes.Contains(col, d) || bytes.Contains(col, []byte(fields.D)) {
					t.Fatalf("key %s: the private scalar is stored in clear", r.Kid)
				}
			}
			if strings.Contains(r.Pub, `"d"`) {
				t.Fatalf("key %s: public_jwk holds a private key", r.Kid)
			}
		}

		_, err = keys.Open(ctx, l, []byte("another secret, 32 bytes or more"))
		if err == nil {
			t.Fatal("keys opened with another secret")
		}
		if !strings.Contains(err.Error(), rows[0].Kid) && !strings.Contains(err.Error(), rows[1].Kid) {
			t.Fatalf("error does not name the kid: %v", err)
		}
		if strings.Contains(err.Error(), fields.D) {
			t.Fatal("error shows the private key")
		}
		if _, err := keys.Open(ctx, l, secret[:31]); err == nil {
			t.Fatal("a 31-byte secret was accepted")
		}

		// A sealed key copied into another row does not open there: the kid
		// is authenticated with it.
		if _, err := db.W.Exec(db.Rebind(`UPDATE signing_keys SET private_enc = ? WHERE kid = ?`), rows[0].Priv, rows[1].Kid); err != nil {
			t.Fatal(err)
		}
		_, err = keys.Open(ctx, l, secret)
		if err == nil || !strings.Contains(err.Error(), rows[1].Kid) {
			t.Fatalf("a key sealed for %s opened as %s: %v", rows[0].Kid, rows[1].Kid, err)
		}
	})
}

func TestRotationByAnotherProcessIsSeenAfterTheRefreshInterval(t *testing.T) {
	eachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		dbServer, dbCLI := twoProcesses(t, d)
		const refresh = 100 * time.Millisecond
		server, err := keys.OpenWith(ctx, openLog(t, dbServer, nil), secret, time.Now, refresh)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := keys.Open(ctx, openLog(t, dbCLI, nil), secret)
		if err != nil {
			t.Fatal(err)
		}
		old := signingKid(t, server, keys.UseMandate, jose.ES256)
		if got := signingKid(t, cli, keys.UseMandate, jose.ES256); got != old {
			t.Fatalf("the two processes sign with %s and %s", old, got)
		}
		if _, err := cli.Rotate(ctx, audit.Actor{Kind: audit.ActorOperator, ID: "cli"}); err != nil {
			t.Fatal(err)
		}
		now := signingKid(t, cli, keys.UseMandate, jose.ES256)
		if now == old {
			t.Fatal("the rotating process still signs with the old key")
		}
		time.Sleep(refresh + 50*time.Millisecond)
		if got := signingKid(t, server, keys.UseMandate, jose.ES256); got != now {
			t.Fatalf("after its refresh interval the server signs with %s, want %s", got, now)
		}
		if !slices.Contains(kids(mustJWKS(t, server)), old) {
			t.Fatal("the server no longer publishes the retired key")
		}
	})
}

func TestKidMintedByAnotherProcessIsFoundBeforeTheRefreshInterval(t *testing.T) {
	eachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		dbServer, dbCLI := twoProcesses(t, d)
		server, err := keys.OpenWith(ctx, openLog(t, dbServer, nil), secret, time.Now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := keys.Open(ctx, openLog(t, dbCLI, nil), secret)
		if err != nil {
			t.Fatal(err)
		}
		old := signingKid(t, server, keys.UseMandate, jose.ES256)
		if _, err := cli.Rotate(ctx, audit.Actor{Kind: audit.ActorOperator, ID: "cli"}); err != nil {
			t.Fatal(err)
		}
		// The server's cache is fresh: it still signs with the old key.
		if got := signingKid(t, server, keys.UseMandate, jose.ES256); got != old {
			t.Fatalf("the server re-read the table before its refresh interval (%s)", got)
		}
		// A mandate signed by the other process is verifiable here.
		compact := sign(t, cli, keys.UseMandate, jose.ES256, "mandate+jwt", "m")
		time.Sleep(1100 * time.Millisecond)
		obj, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		pub, ok, err := server.Public(ctx, obj.Signatures[0].Protected.KeyID)
		if err != nil || !ok {
			t.Fatalf("Public(new kid) = %v, %v", ok, err)
		}
		if _, err := obj.Verify(pub); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConcurrentOpenCreatesExactlyOneCurrentKeyPerUse(t *testing.T) {
	eachDialect(t, func(t *testing.T, d store.Dialect) {
		for range 3 {
			ctx := context.Background()
			dbA, dbB := twoProcesses(t, d)
			logs := []*audit.Log{openLog(t, dbA, nil), openLog(t, dbB, nil)}
			ms := make([]*keys.Manager, 2)
			errs := make([]error, 2)
			var start, done sync.WaitGroup
			start.Add(1)
			for i := range 2 {
				done.Go(func() {
					start.Wait()
					ms[i], errs[i] = keys.Open(ctx, logs[i], secret)
				})
			}
			start.Done()
			done.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, use := range []keys.Use{keys.UseMandate, keys.UseToken} {
				a, b := signingKid(t, ms[0], use, jose.ES256), signingKid(t, ms[1], use, jose.ES256)
				if a != b {
					t.Fatalf("%s: the two processes sign with %s and %s", use, a, b)
				}
			}
			var n int
			if err := dbA.R.Get(&n, `SELECT COUNT(*) FROM signing_keys`); err != nil {
				t.Fatal(err)
			}
			if n != 2 {
				t.Fatalf("%d keys stored, want 2", n)
			}
			if evs := rotatedEvents(t, dbA); len(evs) != 1 {
				t.Fatalf("%d keys.rotated events, want 1", len(evs))
			}
		}
	})
}
