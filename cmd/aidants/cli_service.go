package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
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
	signed := f.Bool("userinfo-signed", false, "answer userinfo as a JWT signed with the ID token algorithm (application/jwt)")
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
		PostLogoutURIs: postLogout, Demarches: splitList(*dem), AuthMethod: *method, JWKS: jwks, IDTokenAlg: *alg, UserinfoSigned: *signed})
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
	fmt.Fprintln(tw, "CLIENT_ID\tNAME\tAUTH\tID TOKEN\tUSERINFO\tDEMARCHES\tREDIRECT URIS")
	for _, s := range svcs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Name, s.AuthMethod, s.IDTokenAlg, userinfoKind(s.UserinfoSigned),
			strings.Join(s.Demarches, ","), strings.Join(s.RedirectURIs, " "))
	}
	return tw.Flush()
}

func userinfoKind(signed bool) string {
	if signed {
		return "signed"
	}
	return "json"
}

func cmdServiceUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("service update")
	env := addEnvFlags(f)
	id := f.String("client-id", "", "client_id of the service to change")
	var u provider.ServiceUpdate
	f.Func("name", "new name", func(v string) error { u.Name = &v; return nil })
	f.Func("demarches", "démarches the service serves, comma-separated", func(v string) error {
		list := splitList(v)
		u.Demarches = &list
		return nil
	})
	f.Func("id-token-alg", "ES256 or RS256", func(v string) error { u.IDTokenAlg = &v; return nil })
	f.Func("userinfo-signed", "true or false", func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		u.UserinfoSigned = &b
		return nil
	})
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("client-id"); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	svc, err := in.provider.UpdateService(ctx, operator, *id, u)
	if err != nil {
		return fmt.Errorf("service update: %w", err)
	}
	fmt.Fprintf(stdout, "updated service %s (client_id %s): ID token %s, userinfo %s, démarches %s\n", svc.Name, svc.ID, svc.IDTokenAlg,
		userinfoKind(svc.UserinfoSigned), strings.Join(svc.Demarches, ","))
	return nil
}
