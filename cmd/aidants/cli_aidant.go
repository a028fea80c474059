package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"aidants/audit"
	"aidants/org"
)

func cmdAidantAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("aidant add")
	env := addEnvFlags(f)
	siret := f.String("org", "", "SIRET of the organisation")
	email := f.String("email", "", "professional email, matched at the first sign-in")
	given := f.String("given-name", "", "first name")
	family := f.String("family-name", "", "family name")
	until := f.String("habilitated-until", "", "end of habilitation, YYYY-MM-DD")
	referent := f.Bool("referent", false, "the aidant is a référent of the organisation")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("org", "email", "given-name", "family-name", "habilitated-until"); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := in.dir.OrganisationBySIRET(ctx, *siret)
	if err != nil {
		return fmt.Errorf("aidant add: %w", err)
	}
	a, err := in.dir.AddAidant(ctx, operator, org.NewAidant{OrganisationID: o.ID, Email: *email, GivenName: *given,
		FamilyName: *family, HabilitatedUntil: *until, Referent: *referent, Aidant: true})
	if err != nil {
		return fmt.Errorf("aidant add: %w", err)
	}
	state := "pending their first sign-in"
	if !a.Pending() {
		state = "already signed in before"
	}
	fmt.Fprintf(stdout, "added aidant %s to %s (id %s, %s)\n", a.Email, o.Name, a.ID, state)
	return nil
}

func cmdAidantList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("aidant list")
	env := addEnvFlags(f)
	siret := f.String("org", "", "only this organisation's aidants")
	if _, err := f.parse(args); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	orgID := ""
	if *siret != "" {
		o, err := in.dir.OrganisationBySIRET(ctx, *siret)
		if err != nil {
			return fmt.Errorf("aidant list: %w", err)
		}
		orgID = o.ID
	}
	rows, err := in.dir.Aidants(ctx, orgID)
	if err != nil {
		return fmt.Errorf("aidant list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tNAME\tORGANISATION\tROLES\tHABILITATED UNTIL\tSTATE\tID")
	for _, r := range rows {
		roles := ""
		if r.IsAidant {
			roles = "aidant"
		}
		if r.IsReferent {
			if roles != "" {
				roles += ","
			}
			roles += "referent"
		}
		state := "active"
		switch {
		case !r.Aidant.Active:
			state = "disabled"
		case !r.Membership.Active:
			state = "removed from organisation"
		case r.Pending():
			state = "pending first sign-in"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s (%s)\t%s\t%s\t%s\t%s\n", r.Email, r.GivenName, r.FamilyName, r.OrgName, r.OrgSIRET,
			roles, r.HabilitatedUntil, state, r.ID)
	}
	return tw.Flush()
}

func cmdAidantDisable(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setActive(ctx, "aidant disable", args, stdout, stderr, false)
}

func cmdAidantEnable(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setActive(ctx, "aidant enable", args, stdout, stderr, true)
}

func setActive(ctx context.Context, name string, args []string, stdout, stderr io.Writer, active bool) error {
	f := newFlags(name)
	env := addEnvFlags(f)
	email := f.String("email", "", "the aidant's email")
	reason := new(string)
	if !active {
		reason = f.String("reason", "", "why (free text, kept erasable; the journal keeps its SHA-256)")
	}
	if _, err := f.parse(args); err != nil {
		return err
	}
	required := []string{"email"}
	if !active {
		required = append(required, "reason")
	}
	if err := f.required(required...); err != nil {
		return err
	}
	if *reason != "" {
		if _, err := audit.CleanFreeText(*reason); err != nil {
			return fmt.Errorf("%s: --reason: %w", name, err)
		}
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	a, err := in.dir.AidantByEmail(ctx, *email)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := in.dir.SetAidantActive(ctx, operator, a.ID, active, *reason); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if active {
		fmt.Fprintf(stdout, "enabled aidant %s\n", a.Email)
	} else {
		fmt.Fprintf(stdout, "disabled aidant %s; their open sessions end at their next request\n", a.Email)
	}
	return nil
}

func cmdAidantHabilitate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("aidant habilitate")
	env := addEnvFlags(f)
	email := f.String("email", "", "the aidant's email")
	until := f.String("until", "", "new end of habilitation, YYYY-MM-DD")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("email", "until"); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	a, err := in.dir.AidantByEmail(ctx, *email)
	if err != nil {
		return fmt.Errorf("aidant habilitate: %w", err)
	}
	if err := in.dir.Habilitate(ctx, operator, a.ID, *until); err != nil {
		return fmt.Errorf("aidant habilitate: %w", err)
	}
	fmt.Fprintf(stdout, "aidant %s is habilitated until %s\n", a.Email, *until)
	return nil
}
