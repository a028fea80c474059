package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/config"
	"aidants/store"
)

// cmdCheck checks a configuration before going live (SPEC §8.1, issue 13):
// one line per check, exit ≠ 0 on any failure. It changes nothing: no
// migration, no event.
func cmdCheck(ctx context.Context, args []string, stdout, _ io.Writer) error {
	f := newFlags("check")
	env := addEnvFlags(f)
	if _, err := f.parse(args); err != nil {
		return err
	}
	failed, total := 0, 0
	report := func(name, ok string, err error) {
		total++
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL  %s: %s\n", name, oneLine(err))
			return
		}
		fmt.Fprintf(stdout, "ok    %s: %s\n", name, ok)
	}
	cfg, err := env.load("")
	if err != nil {
		report("configuration", "", err)
		return checkFailed(failed, total)
	}
	report("configuration", "valid", nil)
	vkey, err := audit.VerifierKey(cfg.Audit.SigningKey)
	report("journal signing key", strings.SplitN(vkey, "+", 2)[0], err)

	db, err := store.Open(ctx, cfg.Database.Driver, cfg.Database.DSN, store.Options{MaxOpenConns: 2, NoCheckpointer: true})
	report("database", cfg.Database.Driver, damaged(cfg, err))
	if err == nil {
		defer db.Close()
		checkDatabase(ctx, cfg, db, vkey, report)
	}
	if !cfg.Dev {
		for _, p := range []struct {
			name string
			c    config.OIDCClient
		}{{"aidants_provider", cfg.AidantsProvider.OIDCClient}, {"franceconnect", cfg.FranceConnect}} {
			ok, err := checkProvider(ctx, p.c.Issuer)
			report(p.name, ok, err)
		}
	}
	wc, err := witnessConfig(cfg, nil)
	if err != nil {
		report("witnesses", "", err)
	}
	for _, w := range wc.Witnesses {
		if cfg.Dev {
			break // the development witness runs inside serve
		}
		report("witness "+w.Verifier.Name(), "answers at "+w.URL, reach(ctx, w.URL))
	}
	return checkFailed(failed, total)
}

func checkFailed(failed, total int) error {
	if failed > 0 {
		return fmt.Errorf("check: %d of %d checks failed", failed, total)
	}
	return nil
}

// checkDatabase checks the schema, every page, and the journal: its head
// and right edge, its latest checkpoint against the configured key, and
// the checkpoint kept in the witness state file.
func checkDatabase(ctx context.Context, cfg config.Config, db *store.DB, vkey string, report func(string, string, error)) {
	ms, _ := store.Migrations(db.Dialect)
	v, err := db.SchemaVersion(ctx)
	switch {
	case err != nil:
		report("schema", "", err)
	case v < len(ms):
		report("schema", "", fmt.Errorf("version %d, this program needs %d: run aidants migrate (serve does it at start)", v, len(ms)))
		return
	default:
		report("schema", fmt.Sprintf("version %d", v), nil)
	}
	report("integrity", "every page reads back as written", damaged(cfg, db.Check(ctx)))
	origins, err := audit.Origins(ctx, db)
	if err != nil || len(origins) == 0 {
		report("journal", "empty", err)
		return
	}
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: cfg.Audit.SigningKey})
	if err != nil {
		report("journal", "", damaged(cfg, err))
		return
	}
	defer l.Close()
	cp, err := l.Latest(ctx)
	if errors.Is(err, audit.ErrEmpty) {
		report("journal", "empty", nil)
		return
	}
	report("journal", fmt.Sprintf("%d events of origin %s, latest checkpoint signed by the configured key", cp.Size, cp.Origin), err)
	path := cfg.Audit.StateFile(cfg.Database)
	kept, err := audit.ReadStateFile(path)
	if err == nil && kept != nil {
		err = l.CheckState(ctx, kept, path)
	}
	what := "no witnessed checkpoint kept yet (" + path + ")"
	if kept != nil {
		what = "reaches the checkpoint kept in " + path
	}
	report("witness state", what, err)
}

// checkProvider fetches an identity provider's discovery document (its
// issuer must be the configured one) and its keys.
func checkProvider(ctx context.Context, issuer string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return "", fmt.Errorf("issuer %s: %w", issuer, err)
	}
	var meta struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKS == "" {
		return "", fmt.Errorf("issuer %s: no jwks_uri in its discovery document", issuer)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, meta.JWKS, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("issuer %s: keys: %w", issuer, err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("issuer %s: keys: %s answers %d", issuer, meta.JWKS, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil || len(set.Keys) == 0 {
		return "", fmt.Errorf("issuer %s: keys: no key at %s (%v)", issuer, meta.JWKS, err)
	}
	return fmt.Sprintf("%s, %d signing keys", issuer, len(set.Keys)), nil
}

// reach tells whether a witness answers at all.
func reach(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(u, "/")+"/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%s answers %d", u, resp.StatusCode)
	}
	return nil
}
