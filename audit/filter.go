package audit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"aidants/store"
)

// Filter selects events for the journal views of référents and auditors.
// Empty fields select everything. When Restricted, only the events of the
// Organisations or of the Services listed are seen, whatever the filters.
type Filter struct {
	Usager, Aidant, Organisation, Service, Mandate, Demarche, Type string
	From, To                                                       time.Time // To is exclusive

	Restricted    bool
	Organisations []string
	Services      []string

	// Newest reads newest first: Query's after is then the index to read
	// below (-1 for the newest).
	Newest bool
}

// queryChunk is how many events Query reads at a time: a query's memory
// does not depend on how many events it returns.
const queryChunk = 500

// Query calls each, in index order, for the events after index after
// (-1 for the first) that the filter selects, at most limit of them
// (0 for no limit). It reads them queryChunk at a time.
func (l *Log) Query(ctx context.Context, f Filter, after int64, limit int, each func(Entry) error) error {
	where, args := f.where()
	seen := 0
	for {
		n := queryChunk
		if limit > 0 && limit-seen < n {
			n = limit - seen
		}
		if n == 0 {
			return nil
		}
		q := `SELECT idx, body, salt FROM audit_events WHERE idx > ?` + where + ` ORDER BY idx LIMIT ?`
		if f.Newest {
			if after < 0 {
				after = 1 << 62
			}
			q = `SELECT idx, body, salt FROM audit_events WHERE idx < ?` + where + ` ORDER BY idx DESC LIMIT ?`
		}
		batch, err := l.entries(ctx, q, append(append([]any{after}, args...), n)...)
		if err != nil {
			return err
		}
		for _, e := range batch {
			if err := each(e); err != nil {
				return err
			}
			after = e.Index
		}
		seen += len(batch)
		if len(batch) < n {
			return nil
		}
	}
}

func (f Filter) where() (string, []any) {
	var b strings.Builder
	var args []any
	eq := func(col, v string) {
		if v != "" {
			fmt.Fprintf(&b, " AND %s = ?", col)
			args = append(args, v)
		}
	}
	eq("usager_id", f.Usager)
	eq("aidant_id", f.Aidant)
	eq("organisation_id", f.Organisation)
	eq("service_id", f.Service)
	eq("mandate_id", f.Mandate)
	eq("type", f.Type)
	if f.Demarche != "" {
		b.WriteString(" AND demarches LIKE ?")
		args = append(args, "%,"+f.Demarche+",%")
	}
	if !f.From.IsZero() {
		b.WriteString(" AND time >= ?")
		args = append(args, store.T(f.From))
	}
	if !f.To.IsZero() {
		b.WriteString(" AND time < ?")
		args = append(args, store.T(f.To))
	}
	if f.Restricted {
		var or []string
		if len(f.Organisations) > 0 {
			or = append(or, "organisation_id IN ("+marks(len(f.Organisations))+")")
			for _, o := range f.Organisations {
				args = append(args, o)
			}
		}
		if len(f.Services) > 0 {
			or = append(or, "service_id IN ("+marks(len(f.Services))+")")
			for _, s := range f.Services {
				args = append(args, s)
			}
		}
		if len(or) == 0 {
			or = append(or, "1 = 0")
		}
		b.WriteString(" AND (" + strings.Join(or, " OR ") + ")")
	}
	return b.String(), args
}

func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }
