package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"aidants/provider"
)

// multi is a flag that may be given several times.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func cmdServiceAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("service add")
	env := addEnvFlags(f)
	name := f.String("name", "", "the service's name, as people will read it")
	var redirects, postLogout multi
	f.Var(&redirects, "redirect-uri", "an exact redirect URI (repeat for several)")
	f.Var(&postLogout, "post-logout-uri", "an exact post-logout redirect URI (repeat for several)")
	dem := f.String("demarches", "", "démarches the service serves, comma-separated")
	method := f.String("auth", provider.PrivateKeyJWT, "client authentication: private_key_jwt, client_secret_basic or client_secret_post")
	jwksFile := f.String("jwks", "", "the service's public keys (JWKS file), for private_key_jwt")
	alg := f.String("id-token-alg", "ES256", "ID token signature: ES256 or RS256")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("name", "demarches"); err != nil {
		return err
	}
	var jwks string
	if *jwksFile != "" {
		b, err := os.ReadFile(*jwksFile)
		if err != nil {
			return fmt.Errorf("service add: %w", err)
		}
		jwks = string(b)
	} else if *method == provider.PrivateKeyJWT {
		return usagef("service add: --jwks FILE is required with --auth private_key_jwt")
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	svc, secret, err := in.provider.AddService(ctx, operator, provider.NewService{Name: *name, RedirectURIs: redirects,
		PostLogoutURIs: postLogout, Demarches: splitList(*dem), AuthMethod: *method, JWKS: jwks, IDTokenAlg: *alg})
	if err != nil {
		return fmt.Errorf("service add: %w", err)
	}
	fmt.Fprintf(stdout, "registered service %s\nclient_id: %s\n", svc.Name, svc.ID)
	if secret != "" {
		fmt.Fprintf(stdout, "client_secret: %s\n(shown once: it is stored hashed and cannot be shown again)\n", secret)
	}
	return nil
}

func cmdServiceList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	in, err := openPlain(ctx, "service list", args, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	svcs, err := in.provider.Services(ctx)
	if err != nil {
		return fmt.Errorf("service list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT_ID\tNAME\tAUTH\tID TOKEN\tDEMARCHES\tREDIRECT URIS")
	for _, s := range svcs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Name, s.AuthMethod, s.IDTokenAlg, strings.Join(s.Demarches, ","), strings.Join(s.RedirectURIs, " "))
	}
	return tw.Flush()
}
