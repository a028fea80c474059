package auth_test

import (
	"errors"
	"testing"

	"aidants/audit"
	"aidants/auth"
	"aidants/devidp"
	"aidants/internal/dbfault"
	"aidants/store/storetest"
)

// refusal tells whether err is one of the answers that blame the person
// or the answer: a refused account, no second factor, a callback that is
// not valid.
func refusal(err error) bool {
	var re *auth.RefusedError
	return errors.As(err, &re) || errors.Is(err, auth.ErrMFARequired) || errors.Is(err, auth.ErrBadCallback)
}

// TestDatabaseFailureAtSignInIsNoRefusal breaks the database under an
// aidant's sign-in callback: the answer is an error of the server, never
// "this sign-in is not valid" nor a refused account, and no
// aidant.login_refused is written for an aidant the directory could not
// read. A failure before the code is redeemed (whether the state was used
// cannot be read) leaves the callback usable: the same one succeeds
// afterwards. A logout whose session cannot be read
// says so instead of pretending, and leaves the session open.
func TestDatabaseFailureAtSignInIsNoRefusal(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := dbfault.Open(t, d)
			e := newEnv(t, envOptions{db: db.DB})
			b := e.browser(t)
			before := db.Events(t)

			f := b.authenticate("/start", devidp.SubCamille)
			db.Fail(dbfault.Readers, "FROM spent_requests")
			if _, err := b.callback(f.callback); err == nil || refusal(err) {
				t.Errorf("state unreadable: %v, want the database's error", err)
			}
			db.Heal()
			if n := db.Events(t); n != before {
				t.Errorf("state unreadable: the journal gained %v", db.EventTypes(t, before))
			}
			if resp, err := b.callback(f.callback); err != nil {
				t.Fatalf("the same callback after the outage: %s %v", resp.Status, err)
			}
			b.mustMe()

			for _, text := range []string{"FROM aidants WHERE issuer", "FROM memberships m JOIN"} {
				other := e.browser(t)
				f := other.authenticate("/start", devidp.SubCamille)
				before := db.Events(t)
				db.Fail(dbfault.Writer, text)
				if _, err := other.callback(f.callback); err == nil || refusal(err) {
					t.Errorf("directory unreadable (%s): %v, want the database's error", text, err)
				}
				db.Heal()
				if n := db.Events(t); n != before {
					t.Errorf("directory unreadable (%s): the journal gained %v", text, db.EventTypes(t, before))
				}
			}

			before = db.Events(t)
			db.Fail(dbfault.Readers, "FROM sessions s JOIN aidants")
			b.do("POST", "/logout", nil)
			if err := e.lastResult().err; err == nil || errors.Is(err, auth.ErrNoSession) {
				t.Errorf("logout with the session unreadable: %v, want the database's error", err)
			}
			db.Heal()
			if got := db.EventTypes(t, before); len(got) != 0 {
				t.Errorf("logout with the session unreadable journaled %v", got)
			}
			b.mustMe() // still signed in: nothing was ended
			b.do("POST", "/logout", nil)
			if got := db.EventTypes(t, before); len(got) != 1 || got[0] != audit.AidantLogout {
				t.Errorf("the logout after the outage journaled %v", got)
			}
		})
	}
}
