package provider_test

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"aidants/audit"
	"aidants/internal/dbfault"
	"aidants/provider"
	"aidants/store/storetest"
)

// eachFaulty runs f on an environment whose database fails on demand, on
// SQLite and on PostgreSQL.
func eachFaulty(t *testing.T, f func(t *testing.T, e *env, db *dbfault.DB)) {
	t.Helper()
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := dbfault.Open(t, d)
			f(t, newEnv(t, db.DB), db)
		})
	}
}

// noEvent fails the test if the journal grew since it held before events.
func noEvent(t *testing.T, db *dbfault.DB, before int, what string) {
	t.Helper()
	if n := db.Events(t); n != before {
		t.Errorf("%s: the journal gained %v although the database failed", what, db.EventTypes(t, before))
	}
}

// TestDatabaseFailureIsNoRefusalOfTheAidantsChoice breaks the database
// while an aidant chooses the person to act for: the provider answers an
// error of its own, never "not eligible" (which the page journals as
// access.denied, a forgery attempt) nor "request gone", and journals
// nothing; once the database is back, the same choice works.
func TestDatabaseFailureIsNoRefusalOfTheAidantsChoice(t *testing.T) {
	eachFaulty(t, func(t *testing.T, e *env, db *dbfault.DB) {
		refusal := func(err error) bool {
			return errors.Is(err, provider.ErrNotEligible) || errors.Is(err, provider.ErrRequestGone)
		}
		f := e.begin(e.jwt, nil)
		before := db.Events(t)
		for _, c := range []struct {
			name    string
			pools   dbfault.Pools
			text    string
			cancels bool // Cancel meets the failure too
		}{
			{"readers down", dbfault.Readers, "", true},
			{"whether the request was answered unreadable", dbfault.Readers, "FROM spent_requests", true},
			{"the mandate unreadable in the unit", dbfault.Writer, "FROM mandates WHERE id", false},
			{"the answer unrecordable in the unit", dbfault.Writer, "INSERT INTO spent_requests", false},
			{"the writer down", dbfault.Writer, "", true},
		} {
			db.Fail(c.pools, c.text)
			_, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, e.mA.ID, "argent")
			if err == nil || refusal(err) {
				t.Errorf("%s: IssueCode = %v, want the database's error", c.name, err)
			}
			if _, _, err := e.p.Request(e.ctx, f.request, testBinding); c.pools == dbfault.Readers && (err == nil || refusal(err)) {
				t.Errorf("%s: Request = %v, want the database's error", c.name, err)
			}
			if c.cancels {
				if _, err := e.p.Cancel(e.ctx, f.request, testBinding); err == nil || refusal(err) {
					t.Errorf("%s: Cancel = %v, want the database's error", c.name, err)
				}
			}
			db.Heal()
			noEvent(t, db, before, c.name)
		}
		// The genuine refusals stay refusals: another organisation's
		// mandate is not eligible, and that is what gets journaled.
		if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, e.mB.ID, "argent"); !errors.Is(err, provider.ErrNotEligible) {
			t.Errorf("another organisation's mandate: %v, want ErrNotEligible", err)
		}
		if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), "an unknown request", testBinding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrRequestGone) {
			t.Errorf("an unknown request: %v, want ErrRequestGone", err)
		}
		e.issue(f, e.a2, e.mA, "argent")
		if got := db.EventTypes(t, before); !slices.Equal(got, []string{audit.MandateUsed}) {
			t.Errorf("after the outage the journal gained %v, want one mandate.used", got)
		}
	})
}

// TestDatabaseFailureIsNoRefusalOfTheServiceOrItsToken breaks the
// database under the token and userinfo endpoints: the service gets 500
// server_error, never invalid_client, invalid_grant or invalid_token
// (which would tell it that its credentials, its code or its token are
// bad), and the journal gains no token.issued; the code survives the
// outage.
func TestDatabaseFailureIsNoRefusalOfTheServiceOrItsToken(t *testing.T) {
	eachFaulty(t, func(t *testing.T, e *env, db *dbfault.DB) {
		f := e.code(e.basic)
		before := db.Events(t)

		// Client authentication reads the registration: e.post and e.jwt
		// have not been read since they registered (nothing cached).
		db.Fail(dbfault.Readers, "")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {e.post.redirect}, "code_verifier": {f.verifier}}
		user, pass := e.authenticate(e.post, form)
		wantError(t, "client_secret_post, readers down", e.postToken(form, user, pass), http.StatusInternalServerError, "server_error")
		form = url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {e.jwt.redirect}, "code_verifier": {f.verifier}}
		user, pass = e.authenticate(e.jwt, form)
		wantError(t, "private_key_jwt, readers down", e.postToken(form, user, pass), http.StatusInternalServerError, "server_error")
		db.Heal()

		// The exchange runs in the writer's transaction.
		for _, text := range []string{"FROM oidc_codes", "FROM mandates WHERE id", "FROM usagers WHERE id", ""} {
			db.Fail(dbfault.Writer, text)
			wantError(t, "token, writer failing on "+text, e.redeem(f, nil), http.StatusInternalServerError, "server_error")
			db.Heal()
		}
		noEvent(t, db, before, "token")
		_, access := e.tokens(f) // the code was not spent by the failures

		before = db.Events(t)
		// The token, then the mandate it names, are read at each use.
		for _, text := range []string{"", "FROM oidc_tokens", "FROM mandates m JOIN"} {
			db.Fail(dbfault.Readers, text)
			wantError(t, "userinfo, readers failing on "+text, e.userinfo(access, nil), http.StatusInternalServerError, "server_error")
			db.Heal()
		}
		if r := e.userinfo(access, nil); r.status != http.StatusOK {
			t.Errorf("userinfo after the outage: %d %v", r.status, r.body)
		}
		noEvent(t, db, before, "userinfo")
	})
}

// TestDatabaseFailureAtAuthorizeAndLogoutIsNoUnknownClient breaks the
// readers under the authorization and logout endpoints: the client is not
// "unknown", the error is the server's.
func TestDatabaseFailureAtAuthorizeAndLogoutIsNoUnknownClient(t *testing.T) {
	eachFaulty(t, func(t *testing.T, e *env, db *dbfault.DB) {
		before := db.Events(t)
		db.Fail(dbfault.Readers, "")
		q, _ := e.params(e.rsa) // never read since it registered
		_, _, err := e.p.Authorize(e.ctx, q)
		var pe *provider.PageError
		var re *provider.RedirectError
		if err == nil || errors.As(err, &pe) || errors.As(err, &re) {
			t.Errorf("authorize with readers down: %v, want the database's error", err)
		}
		if _, _, err := e.p.Logout(e.ctx, url.Values{"client_id": {e.logement.svc.ID}, "post_logout_redirect_uri": {e.logement.logout}}); err == nil {
			t.Error("logout with readers down: no error")
		}
		db.Heal()
		noEvent(t, db, before, "authorize")
	})
}

// TestTokenIssuedOnlyWhenTheTokensCanBeSigned breaks the database while
// the first RS256 key is made for a service's ID tokens: the service gets
// 500 server_error, its code is not spent and token.issued is not
// journaled (no token left the server); once the database is back, the
// same code gives the tokens.
func TestTokenIssuedOnlyWhenTheTokensCanBeSigned(t *testing.T) {
	eachFaulty(t, func(t *testing.T, e *env, db *dbfault.DB) {
		f := e.code(e.rsa) // no RS256 key exists yet
		before := db.Events(t)
		db.Fail(dbfault.Writer, "INSERT INTO signing_keys")
		wantError(t, "token while the key cannot be stored", e.redeem(f, nil), http.StatusInternalServerError, "server_error")
		db.Heal()
		noEvent(t, db, before, "token")
		id, _ := e.tokens(f)
		if alg := header(t, id).Algorithm; alg != "RS256" {
			t.Errorf("ID token signed with %s", alg)
		}
		if got := db.EventTypes(t, before); !slices.Equal(got, []string{audit.KeysRotated, audit.TokenIssued}) {
			t.Errorf("after the outage the journal gained %v", got)
		}
	})
}

// TestDatabaseFailureIsNoRefusalOfASignedUserinfoOrAnUpdate breaks the
// database while a signed userinfo needs its first RS256 key, and while an
// operator updates a service: the service gets 500 server_error, never
// invalid_token; the update fails as the database's error, not as a bad
// value, and changes nothing.
func TestDatabaseFailureIsNoRefusalOfASignedUserinfoOrAnUpdate(t *testing.T) {
	eachFaulty(t, func(t *testing.T, e *env, db *dbfault.DB) {
		signed := e.addSigned("signe", "ES256")
		_, access := e.tokens(e.code(signed))
		yes, rs := true, "RS256"
		before := db.Events(t)
		db.Fail(dbfault.Writer, "UPDATE services")
		_, err := e.p.UpdateService(e.ctx, operator, signed.svc.ID, provider.ServiceUpdate{IDTokenAlg: &rs, UserinfoSigned: &yes})
		var inv *provider.InvalidError
		if err == nil || errors.As(err, &inv) {
			t.Errorf("update with the writer failing: %v, want the database's error", err)
		}
		db.Heal()
		noEvent(t, db, before, "update")
		if status, ctype, _ := e.rawUserinfo(access); status != http.StatusOK || ctype != "application/jwt" {
			t.Fatalf("signed userinfo after the failed update: %d %s", status, ctype)
		}
		// Now for real: userinfo must make the first RS256 key.
		if _, err := e.p.UpdateService(e.ctx, operator, signed.svc.ID, provider.ServiceUpdate{IDTokenAlg: &rs}); err != nil {
			t.Fatal(err)
		}
		before = db.Events(t)
		db.Fail(dbfault.Writer, "INSERT INTO signing_keys")
		r := e.userinfo(access, nil)
		db.Heal()
		wantError(t, "signed userinfo while its key cannot be stored", r, http.StatusInternalServerError, "server_error")
		noEvent(t, db, before, "userinfo")
		if status, ctype, _ := e.rawUserinfo(access); status != http.StatusOK || ctype != "application/jwt" {
			t.Errorf("signed userinfo after the outage: %d %s", status, ctype)
		}
	})
}
