package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"aidants/audit"
	"aidants/auditor"
	"aidants/config"
	"aidants/keys"
	"aidants/mail"
	"aidants/mandate"
	"aidants/notify"
	"aidants/org"
	"aidants/provider"
	"aidants/store"
	"aidants/witness"
)

// operator is the actor of every command-line change.
var operator = audit.Actor{Kind: audit.ActorOperator, ID: "cli"}

// envFlags are the flags every subcommand takes (SPEC §9): --config FILE,
// or --dev with --data DIR.
type envFlags struct {
	config string
	dev    bool
	data   string
}

func addEnvFlags(f *flags) *envFlags {
	e := &envFlags{}
	f.StringVar(&e.config, "config", "", "configuration file (TOML)")
	f.BoolVar(&e.dev, "dev", false, "development mode: everything embedded, data in --data")
	f.StringVar(&e.data, "data", "./data", "development data directory")
	return e
}

// load returns the validated configuration. listen is the address serve
// listens on (it makes the public URL in development).
func (e *envFlags) load(listen string) (config.Config, error) {
	switch {
	case e.dev && e.config != "":
		return config.Config{}, usagef("give --config FILE or --dev, not both")
	case e.dev:
		return devConfig(e.data, listen)
	case e.config != "":
		cfg, err := config.Load(e.config)
		if err != nil {
			return cfg, err
		}
		if listen != "" {
			cfg.Server.Listen = listen
		}
		if cfg.Audit.SigningKey == "" && cfg.Audit.SigningKeyFile != "" {
			b, err := os.ReadFile(cfg.Audit.SigningKeyFile)
			if err != nil {
				return cfg, fmt.Errorf("audit.signing_key_file: %w", err)
			}
			cfg.Audit.SigningKey = strings.TrimSpace(string(b))
		}
		if err := cfg.Validate(); err != nil {
			return cfg, fmt.Errorf("config %s: %w", e.config, err)
		}
		return cfg, nil
	default:
		return config.Config{}, usagef("give --config FILE, or --dev for development")
	}
}

// devSecrets are generated once per development data directory, so that
// sessions, keys and the log survive restarts.
type devSecrets struct {
	SessionSecret       string `json:"session_secret"`
	KeysSecret          string `json:"keys_secret"`
	PairwiseSecret      string `json:"pairwise_secret"`
	AuditSigningKey     string `json:"audit_signing_key"`
	AidantsClientSecret string `json:"aidants_client_secret"`
	FCClientSecret      string `json:"franceconnect_client_secret"`
	// DemoServiceKey is the demo public service's private_key_jwt key
	// (a JWK), made at the first start that needs it.
	DemoServiceKey json.RawMessage `json:"demo_service_key,omitempty"`
}

// devOrigin names the development log and its key.
const devOrigin = "dev.aidants.localhost/audit"

// Development client ids at the development providers.
const (
	devAidantsClient = "aidants-dev"
	devFCClient      = "aidants-dev-franceconnect"
)

func loadDevSecrets(dir string) (*devSecrets, error) {
	path := filepath.Join(dir, "dev-secrets.json")
	var s devSecrets
	b, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	random := func() string {
		b := make([]byte, 32)
		rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	key, err := audit.GenerateKey(devOrigin)
	if err != nil {
		return nil, err
	}
	s = devSecrets{SessionSecret: random(), KeysSecret: random(), PairwiseSecret: random(), AuditSigningKey: key,
		AidantsClientSecret: random(), FCClientSecret: random()}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := saveDevSecrets(dir, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func saveDevSecrets(dir string, s *devSecrets) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return os.WriteFile(filepath.Join(dir, "dev-secrets.json"), b, 0o600)
}

// devConfig is the configuration of development mode: SQLite under dir,
// secrets generated once, and the development providers on this server.
func devConfig(dir, listen string) (config.Config, error) {
	s, err := loadDevSecrets(dir)
	if err != nil {
		return config.Config{}, fmt.Errorf("development secrets: %w", err)
	}
	cfg := config.Default()
	cfg.Dev = true
	if listen == "" {
		listen = cfg.Server.Listen
	}
	public := "http://" + listen
	cfg.Server.Listen, cfg.Server.PublicURL = listen, public
	cfg.Database.DSN = filepath.Join(dir, "aidants.db")
	cfg.Session.Secret = s.SessionSecret
	cfg.Keys.EncryptionSecret = s.KeysSecret
	cfg.Provider.PairwiseSecret = s.PairwiseSecret
	cfg.Audit.Origin, cfg.Audit.SigningKey = devOrigin, s.AuditSigningKey
	cfg.Audit.WitnessStateFile = filepath.Join(dir, "witness-state")
	// The built-in development witness (serve starts it and sets its URL).
	wkey, err := devWitnessKey(dir)
	if err != nil {
		return cfg, fmt.Errorf("development witness: %w", err)
	}
	// No abuse limits in development: the tests and the benchmark drive it
	// hard from one address.
	cfg.Limits = config.Limits{Window: cfg.Limits.Window}
	cfg.Audit.WitnessQuorum = 1
	cfg.Audit.WitnessInterval = config.Duration(500 * time.Millisecond)
	cfg.Audit.Witnesses = []config.Witness{{URL: "http://127.0.0.1:0", Key: wkey}}
	cfg.AidantsProvider.Issuer = public + "/dev/aidants"
	cfg.AidantsProvider.ClientID, cfg.AidantsProvider.ClientSecret = devAidantsClient, s.AidantsClientSecret
	cfg.FranceConnect.Issuer = public + "/dev/franceconnect"
	cfg.FranceConnect.ClientID, cfg.FranceConnect.ClientSecret = devFCClient, s.FCClientSecret
	// Messages go to the built-in mailbox (/dev/courriels), or to the relay
	// of AIDANTS_SMTP_URL when set (a local mailpit, say), tried again
	// within seconds when it is not up yet.
	// AIDANTS_SMTP_URL=none: no mail at all (the benchmark's baseline).
	cfg.Mail.SMTPURL = os.Getenv("AIDANTS_SMTP_URL")
	if cfg.Mail.SMTPURL == "none" {
		cfg.Mail.SMTPURL, cfg.Mail.Off = "", true
	}
	cfg.Mail.RetryAfter = config.Duration(2 * time.Second)
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("development configuration: %w", err)
	}
	return cfg, nil
}

// instance is an open database with its audit log, directory, signing
// keys and mandates.
type instance struct {
	cfg      config.Config
	db       *store.DB
	log      *audit.Log
	dir      *org.Directory
	keys     *keys.Manager
	mandates *mandate.Service
	provider *provider.Provider
	auditors *auditor.API
	// witnessing sends checkpoints to the witnesses (serve runs it).
	witnessing *witness.Service
	// mail is outgoing email (nil when off: no relay outside development
	// mode); notify queues its messages as the journal grows.
	mail   *mail.Setup
	notify *notify.Notifier
	logger *slog.Logger
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// open opens the database, applies migrations and starts the audit writer.
func open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*instance, error) {
	db, err := store.Open(ctx, cfg.Database.Driver, cfg.Database.DSN, store.Options{MaxOpenConns: cfg.Database.MaxOpenConns, WALLimit: int64(cfg.Database.WALLimit)})
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, damaged(cfg, err)
	}
	in, err := assemble(ctx, cfg, db, logger)
	if err != nil {
		db.Close()
		return nil, damaged(cfg, err)
	}
	return in, nil
}

// damaged says what to do about a database whose pages are damaged.
func damaged(cfg config.Config, err error) error {
	if store.IsDamaged(err) {
		return fmt.Errorf("the database %s is damaged (%v): restore the last backup (docs/OPERATIONS.md)", cfg.Database.DSN, err)
	}
	return err
}

// assemble starts the audit writer of an open, migrated database and
// builds the services on it. A database behind the checkpoint kept in the
// witness state file (an older backup restored) opens for reading only:
// every write fails with the one-line reason (audit.Log.Refuse), and serve
// refuses to start.
func assemble(ctx context.Context, cfg config.Config, db *store.DB, logger *slog.Logger) (in *instance, err error) {
	log, err := audit.Open(ctx, db, audit.Options{SigningKey: cfg.Audit.SigningKey, Logger: logger})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			log.Close()
		}
	}()
	if log.Origin() != cfg.Audit.Origin {
		return nil, fmt.Errorf("the audit signing key is named %q but audit.origin is %q", log.Origin(), cfg.Audit.Origin)
	}
	statePath := cfg.Audit.StateFile(cfg.Database)
	kept, err := audit.ReadStateFile(statePath)
	if err != nil {
		return nil, err
	}
	if kept != nil {
		// A journal that cannot be compared with the kept checkpoint (a
		// hash row missing, say) is not appended to either; it stays
		// readable, so that audit verify can name what is wrong.
		if err := log.CheckState(ctx, kept, statePath); err != nil {
			var re *audit.RollbackError
			if !errors.As(err, &re) {
				re = &audit.RollbackError{Msg: fmt.Sprintf("the journal could not be compared with the checkpoint kept in %s (%v). Nothing will be written: run aidants audit verify", statePath, err)}
			}
			log.Refuse(re)
		}
	}
	wcfg, err := witnessConfig(cfg, logger)
	if err != nil {
		return nil, err
	}
	ws, err := witness.New(log, wcfg)
	if err != nil {
		return nil, err
	}
	secret, err := base64.StdEncoding.DecodeString(cfg.Keys.EncryptionSecret)
	if err != nil {
		return nil, fmt.Errorf("keys.encryption_secret: %w", err)
	}
	km, err := keys.Open(ctx, log, secret)
	if err != nil {
		return nil, err
	}
	ms := mandate.New(mandate.Config{Issuer: cfg.Server.PublicURL, ConsentLinkTTL: cfg.Mandate.ConsentLinkTTL.D()}, log, km)
	pairwise, err := base64.StdEncoding.DecodeString(cfg.Provider.PairwiseSecret)
	if err != nil {
		return nil, fmt.Errorf("provider.pairwise_secret: %w", err)
	}
	prov, err := provider.New(provider.Config{Issuer: cfg.Server.PublicURL, PairwiseSecret: pairwise,
		AccessTokenTTL: cfg.Provider.AccessTokenTTL.D(), IDTokenTTL: cfg.Provider.IDTokenTTL.D(), Logger: logger}, log, km, ms)
	if err != nil {
		return nil, err
	}
	auditors := auditor.New(db, log, km, prov, nil)
	prov.ClientCredentials = auditors.ClientCredentials
	// Every process that writes queues the messages its events tell of;
	// the serving process delivers them.
	ms2, err := mail.FromConfig(log, cfg.Mail, cfg.Dev, logger)
	if err != nil && !errors.Is(err, mail.ErrOff) {
		return nil, err
	}
	var outbox *mail.Outbox
	if ms2 != nil {
		outbox = ms2.Outbox
	}
	nf := notify.New(outbox, cfg.Server.PublicURL, logger)
	log.Watch(nf.Watch)
	return &instance{cfg: cfg, db: db, log: log, dir: org.New(log), keys: km, mandates: ms, provider: prov, auditors: auditors,
		witnessing: ws, mail: ms2, notify: nf, logger: logger}, nil
}

// witnessConfig reads the witnesses of the configuration.
func witnessConfig(cfg config.Config, logger *slog.Logger) (witness.Config, error) {
	wc := witness.Config{Quorum: cfg.Audit.WitnessQuorum, Interval: cfg.Audit.WitnessInterval.D(),
		StateFile: cfg.Audit.StateFile(cfg.Database), Logger: logger}
	for i, w := range cfg.Audit.Witnesses {
		v, err := witness.ParseVerifierKey(w.Key)
		if err != nil {
			return wc, fmt.Errorf("audit.witness[%d].key: %w", i, err)
		}
		wc.Witnesses = append(wc.Witnesses, witness.Endpoint{URL: w.URL, Verifier: v, Dev: cfg.Dev && v.Name() == witness.DevWitnessName})
	}
	return wc, nil
}

// wakeMail makes the sender deliver now what a unit just queued.
func (i *instance) wakeMail() {
	if i.mail != nil {
		i.mail.Sender.Wake()
	}
}

func (i *instance) Close() {
	i.log.Close()
	i.db.Close()
}

// openPlain parses the command line of a command that has no flags of
// its own (only --config, or --dev and --data) and opens the instance.
func openPlain(ctx context.Context, name string, args []string, stderr io.Writer) (*instance, error) {
	f := newFlags(name)
	env := addEnvFlags(f)
	if _, err := f.parse(args); err != nil {
		return nil, err
	}
	return openFromFlags(ctx, env, stderr)
}

// openFromFlags parses the environment flags of a subcommand and opens
// the instance. Commands log to stderr at warn level only.
func openFromFlags(ctx context.Context, e *envFlags, stderr io.Writer) (*instance, error) {
	cfg, err := e.load("")
	if err != nil {
		return nil, err
	}
	if cfg.Dev {
		// The development server's address follows its --listen: use
		// the one it recorded, so that issuers agree.
		if u := devPublicURL(ctx, cfg); u != "" {
			cfg.Server.PublicURL = u
		}
	}
	cfg.Log.Level = "warn"
	return open(ctx, cfg, newLogger(cfg, stderr))
}

// devPublicURL reads the public URL the development server last ran at.
func devPublicURL(ctx context.Context, cfg config.Config) string {
	db, err := store.Open(ctx, "sqlite", cfg.Database.DSN, store.Options{MaxOpenConns: 1, NoCheckpointer: true})
	if err != nil {
		return ""
	}
	defer db.Close()
	var u string
	db.R.GetContext(ctx, &u, `SELECT value FROM instance_meta WHERE key = 'dev_public_url'`)
	return u
}
