// Package stats owns the figures a référent sees of their organisation, and
// the operator of the whole instance (issue 14 item 5): mandates created,
// active, revoked and expired per month over the last twelve months (months
// in Europe/Paris), actions taken on behalf of people per démarche and per
// aidant, and the share of consents given at a distance.
//
// Everything is counted by the database, with the same SQL on SQLite and
// PostgreSQL, and every query is bounded: mandates by the
// (organisation_id, created_at) index from the start of the window minus
// the longest duration (no older mandate can still be alive in it),
// actions by the (organisation_id, idx) index of the journal from the
// first position of the window, found by bisection since the journal's
// times follow its order. Nothing here writes.
package stats

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"aidants/mandate"
	"aidants/store"
)

// Months is how many months a report covers, the current one included.
const Months = 12

// Month holds the mandate figures of one calendar month in Paris.
// Active counts the mandates alive at the month's end (at the time of the
// report for the current month); the others count what happened in it.
type Month struct {
	Start                             time.Time // first instant, Paris
	Created, Active, Revoked, Expired int
}

// Label is the month in French: "décembre 2026".
func (m Month) Label() string { return mandate.FrenchMonth(m.Start) }

// Count is a number of actions for one démarche or one aidant.
type Count struct {
	Key  string // the démarche's code or the aidant's id
	Name string // the démarche's label or the aidant's full name
	N    int
}

// Report is the figures of one organisation, or of the whole instance
// when OrganisationID is empty.
type Report struct {
	OrganisationID string
	From, Now      time.Time // the window: from the first month's start to now
	Months         []Month   // oldest first
	ByDemarche     []Count   // most actions first
	ByAidant       []Count   // most actions first; empty for the whole instance
	Remote, OnSite int       // consents of the mandates created in the window
	// The persons' objections ("ce n'était pas d'accord") and the
	// aidants' declarations of error (complements excluded) in the window
	// (issue 15).
	Objections, Errors int
}

// Actions is the number of actions taken in the window.
func (r *Report) Actions() int {
	n := 0
	for _, c := range r.ByDemarche {
		n += c.N
	}
	return n
}

// RemotePercent is the share of consents given at a distance, rounded to
// the nearest percent (0 when there was none).
func (r *Report) RemotePercent() int {
	if r.Remote+r.OnSite == 0 {
		return 0
	}
	return (200*r.Remote + r.Remote + r.OnSite) / (2 * (r.Remote + r.OnSite))
}

// Totals sums the months' created, revoked and expired mandates, and gives
// the active ones now.
func (r *Report) Totals() (created, active, revoked, expired int) {
	for _, m := range r.Months {
		created += m.Created
		revoked += m.Revoked
		expired += m.Expired
	}
	if len(r.Months) > 0 {
		active = r.Months[len(r.Months)-1].Active
	}
	return
}

// Window returns the starts of the Months months ending with now's month,
// in Paris, and the end of the last one.
func Window(now time.Time) (starts []time.Time, end time.Time) {
	p := now.In(mandate.Paris)
	first := time.Date(p.Year(), p.Month()-Months+1, 1, 0, 0, 0, 0, mandate.Paris)
	for i := 0; i <= Months; i++ {
		starts = append(starts, time.Date(first.Year(), first.Month()+time.Month(i), 1, 0, 0, 0, 0, mandate.Paris))
	}
	return starts[:Months], starts[Months]
}

// longest is the longest a mandate lives, with a day of margin.
func longest() time.Duration {
	days := 0
	for _, d := range mandate.Durations {
		days = max(days, d.Days)
	}
	return time.Duration(days+2) * 24 * time.Hour
}

// Compute counts the figures of organisation orgID ("" for the whole
// instance) over the Months months ending now.
func Compute(ctx context.Context, db *store.DB, orgID string, now time.Time) (*Report, error) {
	starts, end := Window(now)
	r := &Report{OrganisationID: orgID, From: starts[0], Now: now}
	if err := r.mandates(ctx, db, starts, end); err != nil {
		return nil, fmt.Errorf("stats: mandates: %w", err)
	}
	if err := r.actions(ctx, db); err != nil {
		return nil, fmt.Errorf("stats: actions: %w", err)
	}
	org, args := "", []any{store.Millis(r.From)}
	if orgID != "" {
		org, args = " AND organisation_id = ?", append(args, orgID)
	}
	if err := db.R.GetContext(ctx, &r.Objections, db.Rebind(`SELECT COUNT(*) FROM objections WHERE created_at >= ?`+org), args...); err != nil {
		return nil, fmt.Errorf("stats: objections: %w", err)
	}
	if err := db.R.GetContext(ctx, &r.Errors, db.Rebind(`SELECT COUNT(*) FROM error_declarations WHERE completes IS NULL AND created_at >= ?`+org), args...); err != nil {
		return nil, fmt.Errorf("stats: errors: %w", err)
	}
	return r, nil
}

// mandates counts the months' figures in one pass over the mandates that
// can touch the window. A mandate ends at its revocation, or when its last
// démarche was withdrawn (as mandate.Status says), or at its expiry.
func (r *Report) mandates(ctx context.Context, db *store.DB, starts []time.Time, end time.Time) error {
	now := store.Millis(r.Now)
	n := strconv.FormatInt
	var cols []string
	for i, s := range starts {
		lo := store.Millis(s)
		hi := store.Millis(end)
		if i+1 < len(starts) {
			hi = store.Millis(starts[i+1])
		}
		at := min(hi, now) // alive at the month's end, or now
		cols = append(cols,
			sum("created_at >= "+n(lo, 10)+" AND created_at < "+n(hi, 10)),
			sum("created_at <= "+n(at, 10)+" AND expires_at > "+n(at, 10)+" AND (ended IS NULL OR ended > "+n(at, 10)+")"),
			sum("ended >= "+n(lo, 10)+" AND ended < "+n(hi, 10)),
			sum("expires_at >= "+n(lo, 10)+" AND expires_at < "+n(hi, 10)+" AND expires_at <= "+n(now, 10)+" AND (ended IS NULL OR ended >= expires_at)"))
	}
	from := n(store.Millis(starts[0]), 10)
	cols = append(cols,
		sum("created_at >= "+from+" AND method = '"+mandate.Remote+"'"),
		sum("created_at >= "+from+" AND method <> '"+mandate.Remote+"'"))
	where := "m.created_at >= ?"
	args := []any{store.Millis(starts[0].Add(-longest()))}
	if r.OrganisationID != "" {
		where = "m.organisation_id = ? AND " + where
		args = append([]any{r.OrganisationID}, args...)
	}
	q := `SELECT ` + strings.Join(cols, ", ") + ` FROM (
		SELECT m.created_at, m.expires_at, m.method,
			COALESCE(m.revoked_at, (SELECT MAX(d.revoked_at) FROM mandate_demarches d WHERE d.mandate_id = m.id
				HAVING COUNT(*) = COUNT(d.revoked_at))) AS ended
		FROM mandates m WHERE ` + where + `) x`
	vals := make([]int64, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := db.R.QueryRowxContext(ctx, db.Rebind(q), args...).Scan(ptrs...); err != nil {
		return err
	}
	for i, s := range starts {
		v := vals[4*i:]
		r.Months = append(r.Months, Month{Start: s, Created: int(v[0]), Active: int(v[1]), Revoked: int(v[2]), Expired: int(v[3])})
	}
	r.Remote, r.OnSite = int(vals[len(vals)-2]), int(vals[len(vals)-1])
	return nil
}

func sum(cond string) string { return "COALESCE(SUM(CASE WHEN " + cond + " THEN 1 ELSE 0 END), 0)" }

// clockMargin is how far the journal's times may run against its order:
// each batch is stamped once the head is locked, so only the clocks of
// several instances sharing one database can disagree, by far less.
const clockMargin = 24 * time.Hour

// firstIndex returns a position of the journal before which every event is
// older than t - clockMargin, by bisection on the primary key, so that the
// window's events are read from an index range rather than from the
// whole history.
func firstIndex(ctx context.Context, db *store.DB, t time.Time) (int64, error) {
	bound := store.Millis(t.Add(-clockMargin))
	var lo, hi int64
	if err := db.R.GetContext(ctx, &hi, `SELECT COALESCE(MAX(idx), -1) + 1 FROM audit_events`); err != nil {
		return 0, err
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		var at int64
		if err := db.R.GetContext(ctx, &at, db.Rebind(`SELECT time FROM audit_events WHERE idx >= ? ORDER BY idx LIMIT 1`), mid); err != nil {
			return 0, err
		}
		if at < bound {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// actions counts the mandate.used events of the window: an aidant chose a
// person and a démarche at a public service (SPEC §6, §7).
func (r *Report) actions(ctx context.Context, db *store.DB) error {
	start, err := firstIndex(ctx, db, r.From)
	if err != nil {
		return err
	}
	where := "e.idx >= ? AND e.type = 'mandate.used' AND e.time >= ? AND e.time <= ?"
	args := []any{start, store.Millis(r.From), store.Millis(r.Now)}
	if r.OrganisationID != "" {
		where = "e.organisation_id = ? AND " + where
		args = append([]any{r.OrganisationID}, args...)
	}
	var rows []struct {
		Demarches string `db:"demarches"`
		N         int    `db:"n"`
	}
	if err := db.R.SelectContext(ctx, &rows, db.Rebind(`SELECT COALESCE(e.demarches, '') AS demarches, COUNT(*) AS n
		FROM audit_events e WHERE `+where+` GROUP BY e.demarches`), args...); err != nil {
		return err
	}
	by := map[string]int{}
	for _, row := range rows {
		for _, code := range strings.Split(row.Demarches, ",") {
			if code != "" {
				by[code] += row.N
			}
		}
	}
	for code, n := range by {
		r.ByDemarche = append(r.ByDemarche, Count{Key: code, Name: mandate.Label(code), N: n})
	}
	sortCounts(r.ByDemarche)
	if r.OrganisationID == "" {
		return nil // the instance's aidants are not listed by name
	}
	var aidants []struct {
		ID     string `db:"id"`
		Given  string `db:"given_name"`
		Family string `db:"family_name"`
		N      int    `db:"n"`
	}
	if err := db.R.SelectContext(ctx, &aidants, db.Rebind(`SELECT e.aidant_id AS id, a.given_name, a.family_name, COUNT(*) AS n
		FROM audit_events e JOIN aidants a ON a.id = e.aidant_id WHERE `+where+`
		GROUP BY e.aidant_id, a.given_name, a.family_name`), args...); err != nil {
		return err
	}
	for _, a := range aidants {
		r.ByAidant = append(r.ByAidant, Count{Key: a.ID, Name: a.Given + " " + a.Family, N: a.N})
	}
	sortCounts(r.ByAidant)
	return nil
}

func sortCounts(c []Count) {
	sort.Slice(c, func(i, j int) bool {
		if c[i].N != c[j].N {
			return c[i].N > c[j].N
		}
		return c[i].Name < c[j].Name
	})
}
