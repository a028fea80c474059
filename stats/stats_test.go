package stats_test

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"testing"
	"time"

	"aidants/audit"
	"aidants/org"
	"aidants/stats"
	"aidants/stats/statstest"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// seeded is a database with two organisations of two aidants each and
// their seeded histories.
type seeded struct {
	db         *store.DB
	orgA, orgB string
	seeds      []*statstest.Seed
}

func seed(t *testing.T, db *store.DB, now time.Time) *seeded {
	t.Helper()
	ctx := context.Background()
	skey, _ := audit.GenerateKey("stats.test.invalid/audit")
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: skey, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dir := org.New(l)
	op := audit.Actor{Kind: audit.ActorOperator, ID: "test"}
	s := &seeded{db: db}
	var orgs []statstest.Org
	for i, siret := range []string{"98765432100015", "13579246800013"} {
		o, err := dir.AddOrganisation(ctx, op, org.NewOrganisation{Name: "Structure " + siret, SIRET: siret})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for j, name := range []string{"Camille", "Dominique"} {
			a, err := dir.AddAidant(ctx, op, org.NewAidant{OrganisationID: o.ID, Email: name + siret + "@example.org",
				GivenName: name, FamilyName: "Martin", HabilitatedUntil: "2099-12-31", Aidant: true, Referent: j == 0})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, a.ID)
		}
		orgs = append(orgs, statstest.Org{ID: o.ID, A1: ids[0], A2: ids[1]})
		if i == 0 {
			s.orgA = o.ID
		} else {
			s.orgB = o.ID
		}
	}
	s.seeds = statstest.Write(t, l, now, orgs...)
	return s
}

func check(t *testing.T, got *stats.Report, want *statstest.Expected) {
	t.Helper()
	if len(got.Months) != len(want.Months) {
		t.Fatalf("%d months, want %d", len(got.Months), len(want.Months))
	}
	for i, m := range got.Months {
		if m.Label() != want.Months[i] || m.Created != want.Created[i] || m.Active != want.Active[i] || m.Revoked != want.Revoked[i] || m.Expired != want.Expired[i] {
			t.Errorf("%s: created %d active %d revoked %d expired %d; want %s: %d %d %d %d", m.Label(), m.Created, m.Active, m.Revoked, m.Expired,
				want.Months[i], want.Created[i], want.Active[i], want.Revoked[i], want.Expired[i])
		}
	}
	byDem := map[string]int{}
	for _, c := range got.ByDemarche {
		byDem[c.Key] = c.N
	}
	if !maps.Equal(byDem, want.ByDemarche) {
		t.Errorf("actions per démarche %v, want %v", byDem, want.ByDemarche)
	}
	if got.OrganisationID != "" {
		byAid := map[string]int{}
		for _, c := range got.ByAidant {
			byAid[c.Key] = c.N
		}
		if !maps.Equal(byAid, want.ByAidant) {
			t.Errorf("actions per aidant %v, want %v", byAid, want.ByAidant)
		}
	} else if len(got.ByAidant) != 0 {
		t.Errorf("the national report names aidants: %v", got.ByAidant)
	}
	if got.Remote != want.Remote || got.OnSite != want.OnSite {
		t.Errorf("remote %d on site %d, want %d %d", got.Remote, got.OnSite, want.Remote, want.OnSite)
	}
}

// TestStatsCountAnOrganisationsMandatesAndActionsOnly seeds two
// organisations on both engines and compares the report of each, and the
// national one, with the figures computed from the seed alone.
func TestStatsCountAnOrganisationsMandatesAndActionsOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		now := time.Now()
		s := seed(t, db, now)
		for _, o := range []string{s.orgA, s.orgB, ""} {
			got, err := stats.Compute(context.Background(), db, o, now)
			if err != nil {
				t.Fatal(err)
			}
			want := statstest.Expect(now, o, s.seeds...)
			check(t, got, want)
			if o == s.orgA {
				created, active, revoked, expired := got.Totals()
				// The seed's shape, so that a check of zeros proves nothing.
				if created != 9 || active == 0 || revoked != 3 || expired == 0 || got.Remote != 5 || got.Actions() != 9 || len(got.ByAidant) != 2 {
					t.Errorf("organisation A: created %d active %d revoked %d expired %d remote %d actions %d aidants %d",
						created, active, revoked, expired, got.Remote, got.Actions(), len(got.ByAidant))
				}
			}
			if o == "" && got.Actions() != 18 {
				t.Errorf("national actions %d, want 18", got.Actions())
			}
		}
	})
}

// TestStatsMonthsAreParisCalendarMonths: the window is twelve months of
// Paris, the current one last, whatever the host's zone.
func TestStatsMonthsAreParisCalendarMonths(t *testing.T) {
	// 31 December 2026 at 23:30 UTC is already January 2027 in Paris.
	starts, end := stats.Window(time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC))
	first, last := stats.Month{Start: starts[0]}, stats.Month{Start: starts[11]}
	if len(starts) != 12 || first.Label() != "février 2026" || last.Label() != "janvier 2027" {
		t.Fatalf("window %v", starts)
	}
	if !end.Equal(time.Date(2027, 1, 31, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("end %v", end)
	}
}
