package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"aidants/org"
	"aidants/store"
)

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("migrate")
	env := addEnvFlags(f)
	if _, err := f.parse(args); err != nil {
		return err
	}
	cfg, err := env.load("")
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.Database.Driver, cfg.Database.DSN, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	v, _ := db.SchemaVersion(ctx)
	fmt.Fprintf(stdout, "applied %d migration(s); schema version %d\n", n, v)
	return nil
}

func cmdOrgAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("org add")
	env := addEnvFlags(f)
	name := f.String("name", "", "organisation name")
	siret := f.String("siret", "", "SIRET (14 digits)")
	dem := f.String("demarches", "", "allowed démarches, comma-separated (default: all)")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("name", "siret"); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := in.dir.AddOrganisation(ctx, operator, org.NewOrganisation{Name: *name, SIRET: *siret, Demarches: splitList(*dem)})
	if err != nil {
		return fmt.Errorf("org add: %w", err)
	}
	fmt.Fprintf(stdout, "created organisation %s (SIRET %s, id %s)\n", o.Name, o.SIRET, o.ID)
	return nil
}

func cmdOrgList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	in, err := openPlain(ctx, "org list", args, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	orgs, err := in.dir.Organisations(ctx)
	if err != nil {
		return fmt.Errorf("org list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SIRET\tNAME\tACTIVE\tDEMARCHES\tID")
	for _, o := range orgs {
		dem := "all"
		if len(o.Demarches) > 0 {
			dem = strings.Join(o.Demarches, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.SIRET, o.Name, yesNo(o.Active), dem, o.ID)
	}
	return tw.Flush()
}

func cmdOrgUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("org update")
	env := addEnvFlags(f)
	siret := f.String("siret", "", "SIRET of the organisation to change")
	var u org.OrganisationUpdate
	f.Func("name", "new name", func(v string) error { u.Name = &v; return nil })
	f.Func("demarches", "allowed démarches, comma-separated, or \"all\"", func(v string) error {
		list := splitList(v)
		if v == "all" {
			list = nil
		}
		u.Demarches = &list
		return nil
	})
	f.Func("active", "true or false", func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		u.Active = &b
		return nil
	})
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("siret"); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := in.dir.OrganisationBySIRET(ctx, *siret)
	if err != nil {
		return fmt.Errorf("org update: %w", err)
	}
	if o, err = in.dir.UpdateOrganisation(ctx, operator, o.ID, u); err != nil {
		return fmt.Errorf("org update: %w", err)
	}
	fmt.Fprintf(stdout, "updated organisation %s (SIRET %s)\n", o.Name, o.SIRET)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
