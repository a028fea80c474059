package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"aidants/auth"
	"aidants/config"
	"aidants/web"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("serve")
	env := addEnvFlags(f)
	listen := f.String("listen", "", "address to listen on (default 127.0.0.1:8080)")
	metricsToken := f.String("metrics-token", "", "bearer token for /metrics (default: loopback clients only)")
	if _, err := f.parse(args); err != nil {
		return err
	}
	var cfg config.Config
	var ln net.Listener
	var err error
	if env.dev {
		// Listen first: the development issuers' URLs need the port.
		addr := *listen
		if addr == "" {
			addr = "127.0.0.1:8080"
		}
		if !config.IsLoopbackAddr(addr) {
			return usagef("serve: --dev listens on loopback only, not on %s", addr)
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		if cfg, err = env.load(ln.Addr().String()); err != nil {
			ln.Close()
			return err
		}
		// The built-in development witness, on a loopback port of its own
		// so that the start-up probe reaches it before the site serves.
		stop, err := startDevWitness(ctx, env.data, &cfg)
		if err != nil {
			ln.Close()
			return err
		}
		defer stop()
	} else {
		if cfg, err = env.load(*listen); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	defer ln.Close()
	logger := newLogger(cfg, stderr)
	in, err := open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer in.Close()
	// A journal behind what was published, or another history, is never
	// appended to (SPEC §6.1): the operator restores a backup that reaches
	// it, or starts a new origin.
	if err := in.log.Refused(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := in.witnessing.Probe(ctx); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	wctx, stopWitnessing := context.WithCancel(context.WithoutCancel(ctx))
	witnessingDone := make(chan struct{})
	go func() {
		defer close(witnessingDone)
		in.witnessing.Run(wctx)
	}()
	defer func() {
		stopWitnessing()
		<-witnessingDone
	}()

	handler, err := wire(ctx, in, env, *metricsToken)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	mode := ""
	if cfg.Dev {
		mode = " (mode développement, données dans " + env.data + ")"
	}
	fmt.Fprintf(stdout, "Aidants est prêt sur %s%s\n", cfg.Server.PublicURL, mode)
	logger.Info("serving", "url", cfg.Server.PublicURL, "listen", ln.Addr().String(), "dev", cfg.Dev, "version", version)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	return nil
}

// wire builds every service of a serving instance and returns the site.
func wire(ctx context.Context, in *instance, env *envFlags, metricsToken string) (http.Handler, error) {
	cfg := in.cfg
	secret, err := base64.StdEncoding.DecodeString(cfg.Session.Secret)
	if err != nil {
		return nil, fmt.Errorf("session.secret: %w", err)
	}
	public := cfg.Server.PublicURL
	authSvc, err := auth.New(auth.Config{
		Secure:              cfg.SecureCookies(),
		SessionSecret:       secret,
		IdleTimeout:         cfg.Session.IdleTimeout.D(),
		AbsoluteTimeout:     cfg.Session.AbsoluteTimeout.D(),
		StepUpMaxAge:        cfg.Session.StepUpMaxAge.D(),
		UsagerIdle:          cfg.Session.UsagerIdleTimeout.D(),
		UsagerAbsolute:      cfg.Session.UsagerAbsoluteTimeout.D(),
		PostLogoutURL:       public + "/deconnecte",
		UsagerPostLogoutURL: public + "/mon-espace/deconnecte",
		AidantsRP:           aidantsRPConfig(cfg.AidantsProvider, public+"/connexion/aidant/retour"),
		FranceConnect:       rpConfig(cfg.FranceConnect, public+"/franceconnect/retour"),
		Logger:              in.logger,
	}, in.log, in.dir)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := web.New(web.Options{
		PublicURL: public, Dev: cfg.Dev, OverrideDir: cfg.Server.OverrideDir,
		FormActions:  []string{cfg.AidantsProvider.Issuer, cfg.FranceConnect.Issuer},
		MetricsToken: metricsToken, Logger: in.logger, Registry: reg,
	}, web.Deps{Auth: authSvc, Log: in.log, Dir: in.dir, Mandates: in.mandates, Keys: in.keys,
		Provider: in.provider, ServiceName: in.provider.ServiceName, AuditEvents: in.auditors.Events, Witnessing: in.witnessing})
	if err != nil {
		return nil, err
	}
	if cfg.Dev {
		secrets, err := loadDevSecrets(env.data)
		if err != nil {
			return nil, err
		}
		aidants, fc, err := devProviders(public, secrets)
		if err != nil {
			return nil, fmt.Errorf("development providers: %w", err)
		}
		srv.Mount("/dev/aidants/", aidants)
		srv.Mount("/dev/franceconnect/", fc)
		if err := seedDev(ctx, in, aidants.Issuer(), fc.Issuer()); err != nil {
			return nil, err
		}
		demo, err := demoService(ctx, in, env.data)
		if err != nil {
			return nil, err
		}
		srv.Mount("/dev/service", demo)
		srv.Mount("/dev/service/", demo)
	}
	return srv.Handler(), nil
}

func rpConfig(c config.OIDCClient, redirect string) auth.ProviderConfig {
	return auth.ProviderConfig{
		Issuer: c.Issuer, ClientID: c.ClientID, ClientSecret: c.ClientSecret, Scopes: c.Scopes,
		ACRValues: c.ACRValues, RedirectURL: redirect, RequireMFA: c.RequireMFA, MFAAMRs: c.MFAAMRs, MFAACRs: c.MFAACRs,
	}
}

func aidantsRPConfig(c config.AidantsProvider, redirect string) auth.ProviderConfig {
	p := rpConfig(c.OIDCClient, redirect)
	p.MatchEmailRequiresVerified = c.MatchEmailRequiresVerified
	return p
}
