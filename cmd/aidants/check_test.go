package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"aidants/devidp"
	"aidants/store"
)

// TestCheckBeforeGoingLive runs `aidants check` on a production
// configuration: every line ok with the real providers' discovery and
// keys and a witness; one clear FAIL line, and exit ≠ 0, for a provider
// whose discovery document names another issuer, an unreachable witness,
// and pending migrations — and nothing changed by the check.
func TestCheckBeforeGoingLive(t *testing.T) {
	mux := http.NewServeMux()
	idp := httptest.NewServer(mux)
	defer idp.Close()
	for _, path := range []string{"/aidants", "/fc"} {
		p, err := devidp.New(devidp.Options{Issuer: idp.URL + path, Kind: devidp.KindAidants, Identities: devidp.AidantIdentities("98765432100015")})
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle(path+"/", p)
	}
	j := newJournalSetup(t, store.SQLite, "check.aidants.invalid/audit")
	j.withWitnesses(1, 1)
	cfg := func(aidantsIssuer string) string {
		path := j.config()
		b, _ := os.ReadFile(path)
		s := strings.Replace(string(b), `issuer = "https://proconnect.test.invalid"`, `issuer = "`+aidantsIssuer+`"`, 1)
		s = strings.Replace(s, `issuer = "https://franceconnect.test.invalid"`, `issuer = "`+idp.URL+`/fc"`, 1)
		os.WriteFile(path, []byte(s), 0o600)
		return path
	}
	// A fresh database: migrations pending, and check applies none.
	out, err := (cli{t: t}).run("check", "--config", cfg(idp.URL+"/aidants"))
	if err == nil || !strings.Contains(out, "FAIL  schema: version 0") || !strings.Contains(out, "aidants migrate") {
		t.Fatalf("check on a fresh database: %v\n%s", err, out)
	}
	j.addOrganisations(0, 2)
	out, err = (cli{t: t}).run("check", "--config", cfg(idp.URL+"/aidants"))
	if err != nil || strings.Contains(out, "FAIL") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{"ok    configuration", "ok    integrity", "ok    journal: 3 events", "ok    aidants_provider: " + idp.URL + "/aidants", "ok    franceconnect:", "ok    witness witness-1.test.invalid"} {
		if !strings.Contains(out, want) {
			t.Errorf("check lacks %q:\n%s", want, out)
		}
	}
	// A wrong issuer: the discovery document says another.
	out, err = (cli{t: t}).run("check", "--config", cfg(idp.URL+"/fc/../aidants"))
	if err == nil || !strings.Contains(out, "FAIL  aidants_provider: issuer "+idp.URL+"/fc/../aidants") || strings.Count(out, "FAIL") != 1 {
		t.Fatalf("check with a wrong issuer: %v\n%s", err, out)
	}
	j.witnesses[0].Stop()
	if out, err = (cli{t: t}).run("check", "--config", cfg(idp.URL+"/aidants")); err == nil || !strings.Contains(out, "FAIL  witness witness-1.test.invalid") {
		t.Fatalf("check with the witness down: %v\n%s", err, out)
	}
	var n int
	db := mustOpen(t, j)
	db.R.Get(&n, `SELECT COUNT(*) FROM audit_events`)
	if n != 3 {
		t.Fatalf("%d events after the checks, want the 3 written", n)
	}
}

func mustOpen(t *testing.T, j *journalSetup) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), j.driver, j.dsn, store.Options{MaxOpenConns: 1, NoCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
