package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"aidants/auditor"
)

func cmdAuditorAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("auditor add")
	env := addEnvFlags(f)
	name := f.String("name", "", "the auditor's name (an administration, a system)")
	jwksFile := f.String("jwks", "", "the auditor's public keys (JWKS file)")
	jwksURI := f.String("jwks-uri", "", "or where to fetch them (https URL)")
	all := f.Bool("all", false, "scope: the whole journal")
	orgs := f.String("organisations", "", "scope: these organisations' events (SIRETs, comma-separated)")
	svcs := f.String("services", "", "scope: these services' events (client_ids, comma-separated)")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("name"); err != nil {
		return err
	}
	var jwks string
	if *jwksFile != "" {
		b, err := os.ReadFile(*jwksFile)
		if err != nil {
			return fmt.Errorf("auditor add: %w", err)
		}
		jwks = string(b)
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	var orgIDs []string
	for _, siret := range splitList(*orgs) {
		o, err := in.dir.OrganisationBySIRET(ctx, siret)
		if err != nil {
			return fmt.Errorf("auditor add: --organisations: no organisation with SIRET %s", siret)
		}
		orgIDs = append(orgIDs, o.ID)
	}
	a, err := in.auditors.Add(ctx, operator, auditor.NewAuditor{Name: *name, JWKS: jwks, JWKSURI: *jwksURI, All: *all,
		Organisations: orgIDs, Services: splitList(*svcs)})
	if err != nil {
		return fmt.Errorf("auditor add: %w", err)
	}
	fmt.Fprintf(stdout, "registered auditor %s\nclient_id: %s\nscope: %s\ntoken endpoint: %s/oidc/token (client credentials, private_key_jwt, scope audit:read)\n",
		a.Name, a.ID, a.Scope(), in.cfg.Server.PublicURL)
	return nil
}

func cmdAuditorList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	in, err := openPlain(ctx, "auditor list", args, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	list, err := in.auditors.List(ctx)
	if err != nil {
		return fmt.Errorf("auditor list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT_ID\tNAME\tSCOPE\tKEYS")
	for _, a := range list {
		keys := "jwks"
		if a.JWKSURI != "" {
			keys = a.JWKSURI
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.ID, a.Name, a.Scope(), keys)
	}
	return tw.Flush()
}
