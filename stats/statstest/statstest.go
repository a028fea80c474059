// Package statstest seeds an organisation's history for the statistics
// tests (mandates over many months, created, revoked, withdrawn, expired,
// on site and at a distance; actions of two aidants on several démarches)
// and computes from the seed alone, in Go, the figures that package stats
// must find in the database.
package statstest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"aidants/audit"
	"aidants/mandate"
	"aidants/store"
)

// Mandate is one seeded mandate, as the test knows it.
type Mandate struct {
	ID, Org, Method  string
	Created, Expires time.Time
	Ended            time.Time // revoked, or its last démarche withdrawn; zero if neither
}

// Action is one seeded mandate.used event.
type Action struct {
	Org, Aidant, Demarche, Mandate string
	At                             time.Time
}

// Seed is what was written.
type Seed struct {
	Mandates []Mandate
	Actions  []Action
}

// Expected are the figures of one organisation ("" for all) computed from
// the seed alone.
type Expected struct {
	Months                            []string // French month labels, oldest first
	Created, Active, Revoked, Expired []int
	ByDemarche                        map[string]int // code → actions
	ByAidant                          map[string]int // aidant id → actions
	Remote, OnSite                    int
}

var seq int

// Org is an organisation to seed, with its two aidants (A1 the more
// active).
type Org struct{ ID, A1, A2 string }

// Write seeds, through the journal's only write path and in one
// transaction, the history of each organisation relative to now, and
// returns one Seed per organisation. The actions of all of them are
// journaled in the order of their times, as the journal's are (package
// stats relies on it to find the window's first position).
func Write(t testing.TB, log *audit.Log, now time.Time, orgs ...Org) []*Seed {
	t.Helper()
	var seeds []*Seed
	var acts []Action
	err := log.Write(context.Background(), func(tx *audit.Tx) error {
		for _, o := range orgs {
			s, err := write(tx, o.ID, o.A1, o.A2, now)
			if err != nil {
				return err
			}
			seeds = append(seeds, s)
			acts = append(acts, s.Actions...)
		}
		slices.SortStableFunc(acts, func(a, b Action) int { return a.At.Compare(b.At) })
		for _, a := range acts {
			if _, err := tx.Append(audit.Event{Type: audit.MandateUsed, Time: audit.Time{Time: a.At}, Actor: audit.Actor{Kind: audit.ActorAidant, ID: a.Aidant},
				Aidant: a.Aidant, Organisation: a.Org, Usager: "usa_x", Mandate: a.Mandate, Service: "svc_test", Demarches: []string{a.Demarche}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	return seeds
}

func write(tx *audit.Tx, orgID, a1, a2 string, now time.Time) (*Seed, error) {
	p := now.In(mandate.Paris)
	month := func(k int) time.Time { // a moment in the k-th month before now's
		return time.Date(p.Year(), p.Month()-time.Month(k), 4, 10, 0, 0, 0, mandate.Paris).UTC()
	}
	day := 24 * time.Hour
	type spec struct {
		created  time.Time
		days     int
		method   string
		revoke   time.Duration // after creation; 0: never
		withdraw bool          // withdraw every démarche rather than revoke
		partial  bool          // withdraw one démarche of two (still active)
	}
	specs := []spec{
		{created: month(13), days: 365, method: mandate.OnSite},                  // created before the window, expires in it
		{created: month(11), days: 31, method: mandate.OnSite},                   // expires the month after
		{created: month(9), days: 182, method: mandate.Remote, revoke: 40 * day}, // revoked
		{created: month(6), days: 365, method: mandate.Remote},                   // active
		{created: month(5), days: 31, method: mandate.OnSite, revoke: 10 * day, withdraw: true},
		{created: month(3), days: 365, method: mandate.OnSite, partial: true},   // one démarche withdrawn: active
		{created: month(2), days: 1, method: mandate.Remote},                    // expired the next day
		{created: month(1), days: 182, method: mandate.Remote, revoke: 2 * day}, // revoked
		{created: now.Add(-time.Hour), days: 365, method: mandate.OnSite},       // this month
		{created: now.Add(-2 * time.Hour), days: 31, method: mandate.Remote},    // this month
	}
	s := &Seed{}
	err := func() error {
		for _, sp := range specs {
			seq++
			id := fmt.Sprintf("man_stats%04d%s", seq, orgID)
			usa := fmt.Sprintf("usa_stats%04d", seq)
			drf := fmt.Sprintf("drf_stats%04d", seq)
			created := sp.created.Truncate(time.Millisecond)
			expires := mandate.Duration{Days: sp.days}.Until(created)
			m := Mandate{ID: id, Org: orgID, Method: sp.method, Created: created, Expires: expires}
			ms := store.Millis
			if _, err := tx.Exec(`INSERT INTO usagers (id, issuer, subject, given_name, family_name, birthdate, created_at, updated_at)
				VALUES (?, 'https://fc.test.invalid', ?, 'Personne', 'Test', '1950-01-01', ?, ?)`, usa, usa, ms(created), ms(created)); err != nil {
				return err
			}
			if _, err := tx.Exec(`INSERT INTO mandate_drafts (id, organisation_id, created_by, created_at, demarches, duration, method, digest, salt, status, expires_at, usager_id, mandate_id)
				VALUES (?, ?, ?, ?, 'argent,logement', '1a', ?, 'd', 's', 'completed', ?, ?, ?)`, drf, orgID, a1, ms(created), sp.method, ms(created), usa, id); err != nil {
				return err
			}
			var revoked any
			if sp.revoke > 0 && !sp.withdraw {
				m.Ended = created.Add(sp.revoke)
				revoked = ms(m.Ended)
			}
			if _, err := tx.Exec(`INSERT INTO mandates (id, organisation_id, usager_id, created_by, created_at, expires_at, method, draft_id, jws, evidence_token, evidence_jwk, revoked_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'jws', 'tok', 'jwk', ?)`, id, orgID, usa, a1, ms(created), ms(expires), sp.method, drf, revoked); err != nil {
				return err
			}
			for j, dem := range []string{"argent", "logement"} {
				var withdrawn any
				switch {
				case sp.withdraw:
					at := created.Add(sp.revoke + time.Duration(j)*time.Hour) // the last one ends the mandate
					withdrawn, m.Ended = ms(at), at
				case sp.partial && j == 0:
					withdrawn = ms(created.Add(day))
				}
				if _, err := tx.Exec(`INSERT INTO mandate_demarches (mandate_id, demarche, revoked_at) VALUES (?, ?, ?)`, id, dem, withdrawn); err != nil {
					return err
				}
			}
			s.Mandates = append(s.Mandates, m)
		}
		acts := []struct {
			k        int
			aidant   string
			demarche string
		}{{13, a1, "argent"}, {11, a1, "argent"}, {6, a1, "argent"}, {6, a1, "logement"}, {3, a1, "logement"}, {2, a1, "argent"},
			{1, a1, "social"}, {5, a2, "argent"}, {2, a2, "social"}, {1, a2, "social"}}
		for _, a := range acts {
			s.Actions = append(s.Actions, Action{Org: orgID, Aidant: a.aidant, Demarche: a.demarche, At: month(a.k).Truncate(time.Millisecond), Mandate: s.Mandates[0].ID})
		}
		return nil
	}()
	return s, err
}

// Expect computes the figures of organisation orgID ("" for every one)
// from the seeds, as of now.
func Expect(now time.Time, orgID string, seeds ...*Seed) *Expected {
	p := now.In(mandate.Paris)
	e := &Expected{ByDemarche: map[string]int{}, ByAidant: map[string]int{}}
	first := time.Date(p.Year(), p.Month()-11, 1, 0, 0, 0, 0, mandate.Paris)
	for i := 0; i < 12; i++ {
		lo := time.Date(first.Year(), first.Month()+time.Month(i), 1, 0, 0, 0, 0, mandate.Paris)
		hi := time.Date(first.Year(), first.Month()+time.Month(i+1), 1, 0, 0, 0, 0, mandate.Paris)
		at := hi
		if now.Before(at) {
			at = now
		}
		in := func(t time.Time) bool { return !t.IsZero() && !t.Before(lo) && t.Before(hi) }
		var c, a, r, x int
		for _, s := range seeds {
			for _, m := range s.Mandates {
				if orgID != "" && m.Org != orgID {
					continue
				}
				if in(m.Created) {
					c++
				}
				if !m.Created.After(at) && m.Expires.After(at) && (m.Ended.IsZero() || m.Ended.After(at)) {
					a++
				}
				if in(m.Ended) {
					r++
				}
				if in(m.Expires) && !m.Expires.After(now) && (m.Ended.IsZero() || !m.Ended.Before(m.Expires)) {
					x++
				}
			}
		}
		e.Months = append(e.Months, mandate.FrenchMonth(lo))
		e.Created, e.Active, e.Revoked, e.Expired = append(e.Created, c), append(e.Active, a), append(e.Revoked, r), append(e.Expired, x)
	}
	for _, s := range seeds {
		for _, m := range s.Mandates {
			if (orgID == "" || m.Org == orgID) && !m.Created.Before(first) {
				if m.Method == mandate.Remote {
					e.Remote++
				} else {
					e.OnSite++
				}
			}
		}
		for _, a := range s.Actions {
			if (orgID == "" || a.Org == orgID) && !a.At.Before(first) && !a.At.After(now) {
				e.ByDemarche[a.Demarche]++
				e.ByAidant[a.Aidant]++
			}
		}
	}
	return e
}
