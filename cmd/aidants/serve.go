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
	"aidants/mail"
	"aidants/objection"
	"aidants/store"
	"aidants/web"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("serve")
	env := addEnvFlags(f)
	listen := f.String("listen", "", "address to listen on (default 127.0.0.1:8080)")
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

	handler, metricsHandler, err := wire(ctx, in, env)
	if err != nil {
		return damaged(cfg, err)
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

	// The full integrity check reads the whole file: in the background,
	// so that start-up stays constant-time; a damaged database stops
	// every write and /readyz.
	go func() {
		if err := in.db.Check(context.WithoutCancel(ctx)); errors.Is(err, store.ErrDamaged) {
			in.log.Refuse(fmt.Errorf("%w. Nothing will be written: stop the service and restore the last backup (docs/OPERATIONS.md)", err))
			logger.Error("the database is damaged; writes are stopped", "err", err.Error())
		} else if err != nil {
			logger.Warn("the database's integrity check could not run", "err", err.Error())
		} else {
			logger.Info("the database's integrity check passed")
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if addr := cfg.Server.MetricsListen; addr != "" {
		mln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("serve: server.metrics_listen: %w", err)
		}
		msrv := &http.Server{Handler: metricsHandler, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(mln)
		defer msrv.Close()
		logger.Info("metrics served apart", "listen", mln.Addr().String())
	}
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

// wire builds every service of a serving instance and returns the site,
// and the metrics alone for a listener of their own.
func wire(ctx context.Context, in *instance, env *envFlags) (http.Handler, http.Handler, error) {
	cfg := in.cfg
	secret, err := base64.StdEncoding.DecodeString(cfg.Session.Secret)
	if err != nil {
		return nil, nil, fmt.Errorf("session.secret: %w", err)
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
		return nil, nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := web.New(web.Options{
		PublicURL: public, Dev: cfg.Dev, OverrideDir: cfg.Server.OverrideDir,
		FormActions:  []string{cfg.AidantsProvider.Issuer, cfg.FranceConnect.Issuer},
		MetricsToken: cfg.Server.MetricsToken, NoPublicMetrics: cfg.Server.MetricsListen != "", TrustedProxies: cfg.Server.TrustedNets(),
		Limits: web.Limits{Window: cfg.Limits.Window.D(), SignIn: cfg.Limits.SignIn, ConsentLinks: cfg.Limits.ConsentLinks,
			TokenFailures: cfg.Limits.TokenFailures, Verify: cfg.Limits.Verify, AuditorAPI: cfg.Limits.AuditorAPI},
		PublicStats: cfg.Server.PublicStatistics,
		Logger:      in.logger, Registry: reg,
	}, web.Deps{Auth: authSvc, Log: in.log, Dir: in.dir, Mandates: in.mandates, Keys: in.keys,
		Provider: in.provider, ServiceName: in.provider.ServiceName, AuditEvents: in.auditors.Events, Witnessing: in.witnessing,
		Notify: in.notify, Objections: objection.New(in.log), MailWake: in.wakeMail})
	if err != nil {
		return nil, nil, err
	}
	if cfg.Dev {
		secrets, err := loadDevSecrets(env.data)
		if err != nil {
			return nil, nil, err
		}
		aidants, fc, err := devProviders(public, secrets)
		if err != nil {
			return nil, nil, fmt.Errorf("development providers: %w", err)
		}
		srv.Mount("/dev/aidants/", aidants)
		srv.Mount("/dev/franceconnect/", fc)
		if err := seedDev(ctx, in, aidants.Issuer(), fc.Issuer()); err != nil {
			return nil, nil, err
		}
		demo, err := demoService(ctx, in, env.data)
		if err != nil {
			return nil, nil, err
		}
		srv.Mount("/dev/service", demo)
		srv.Mount("/dev/service/", demo)
	}
	if in.mail != nil {
		in.mail.Sender.Register(reg)
		if in.mail.Mailbox != nil {
			srv.Mount(mail.DevMailboxPath, in.mail.Mailbox)
			srv.Mount(mail.DevMailboxPath+"/", in.mail.Mailbox)
		}
		go in.mail.Sender.Run(ctx)
		go in.notify.Run(ctx, in.log, time.Minute, in.wakeMail)
		in.logger.Info("mail", "relay", in.mail.Relay)
	} else {
		in.logger.Warn("mail is off: nobody is told by email (set mail.smtp_url or AIDANTS_SMTP_URL)")
	}
	go srv.Run(ctx)
	return srv.Handler(), srv.MetricsHandler(), nil
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
