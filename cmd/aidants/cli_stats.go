package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"aidants/org"
	"aidants/stats"
	"aidants/store"
)

// cmdStats prints the figures of the statistics pages for the whole
// instance, or for one organisation with --org (issue 14 item 5). It only
// reads, so it writes no event.
func cmdStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("stats")
	env := addEnvFlags(f)
	orgRef := f.String("org", "", "one organisation only: its id or its SIRET (default: every organisation)")
	if _, err := f.parse(args); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	scope := "all organisations"
	orgID := ""
	if *orgRef != "" {
		o, err := in.dir.Organisation(ctx, *orgRef)
		if errors.Is(err, store.ErrNotFound) {
			o, err = in.dir.OrganisationBySIRET(ctx, *orgRef)
		}
		if errors.Is(err, org.ErrNotFound) {
			return fmt.Errorf("stats: no organisation %q (give its id or its SIRET; see org list)", *orgRef)
		}
		if err != nil {
			return fmt.Errorf("stats: %w", err)
		}
		orgID, scope = o.ID, fmt.Sprintf("%s (SIRET %s, id %s)", o.Name, o.SIRET, o.ID)
	}
	rep, err := stats.Compute(ctx, in.db, orgID, time.Now())
	if err != nil {
		return err
	}
	printStats(stdout, rep, scope)
	return nil
}

func printStats(w io.Writer, rep *stats.Report, scope string) {
	fmt.Fprintf(w, "Statistics of %s, %s to now (months in Europe/Paris)\n\n", scope, rep.From.Format("2006-01"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MONTH\tCREATED\tACTIVE\tREVOKED\tEXPIRED\t")
	for _, m := range rep.Months {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", m.Start.Format("2006-01"), m.Created, m.Active, m.Revoked, m.Expired)
	}
	created, active, revoked, expired := rep.Totals()
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t\n", created, active, revoked, expired)
	tw.Flush()
	fmt.Fprintf(w, "\nActions on behalf of people (mandate.used): %d\n", rep.Actions())
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEMARCHE\tACTIONS")
	for _, c := range rep.ByDemarche {
		fmt.Fprintf(tw, "%s\t%d\n", c.Key, c.N)
	}
	tw.Flush()
	if rep.OrganisationID != "" {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AIDANT\tACTIONS\tID")
		for _, c := range rep.ByAidant {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", c.Name, c.N, c.Key)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nConsents of the mandates created: %d remote, %d on site (%d%% remote)\n", rep.Remote, rep.OnSite, rep.RemotePercent())
	fmt.Fprintf(w, "Objections by the persons: %d; errors declared by the aidants: %d\n", rep.Objections, rep.Errors)
}
