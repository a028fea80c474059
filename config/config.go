// Package config owns the service configuration: a TOML file decoded into a
// typed struct with defaults, secrets taken from environment variables, and a
// Validate method that reports every problem at once.
//
// Unknown keys are rejected: a typo in a production file must stop the
// service, not be silently ignored. config.example.toml at the repository
// root documents every key, and a test decodes it.
package config

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// Config is the whole configuration of an instance.
type Config struct {
	Server          Server          `toml:"server"`
	Database        Database        `toml:"database"`
	Session         Session         `toml:"session"`
	AidantsProvider AidantsProvider `toml:"aidants_provider"`
	FranceConnect   OIDCClient      `toml:"franceconnect"`
	Audit           Audit           `toml:"audit"`
	Keys            Keys            `toml:"keys"`
	Mandate         Mandate         `toml:"mandate"`
	Provider        Provider        `toml:"provider"`
	Limits          Limits          `toml:"limits"`
	Mail            Mail            `toml:"mail"`
	Log             Log             `toml:"log"`

	// Dev is set by `--dev`, never by the file: development identity
	// providers, the demo service and the seed are mounted, and the
	// server refuses to listen anywhere but on loopback.
	Dev bool `toml:"-"`
}

// Server is the HTTP side of the instance.
type Server struct {
	// PublicURL is the address people and services use; it is also the
	// OpenID issuer and the base of every link in mails and QR codes.
	PublicURL string `toml:"public_url"`
	// Listen is the TCP address to listen on.
	Listen string `toml:"listen"`
	// OverrideDir, when set, is a directory whose templates/*.html and
	// static/* files replace the embedded ones of the same name.
	OverrideDir string `toml:"override_dir"`
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// TrustedProxies lists the reverse proxies (CIDRs) whose
	// X-Forwarded-For names the client; otherwise the peer is the client.
	TrustedProxies []string `toml:"trusted_proxies"`
	// MetricsToken, when set, is required as a Bearer token on /metrics.
	// Environment: AIDANTS_METRICS_TOKEN.
	MetricsToken string `toml:"metrics_token"`
	// MetricsListen, when set, serves /metrics on this address of its own
	// (a loopback or internal one), and never on the public listener.
	MetricsListen string `toml:"metrics_listen"`
	// PublicStatistics serves the instance's national figures (mandates
	// per month, démarches, consents at a distance; never a name) to
	// anyone at /statistiques. Off by default.
	PublicStatistics bool `toml:"public_statistics"`
}

// TrustedNets parses TrustedProxies (Validate has checked them).
func (s Server) TrustedNets() []*net.IPNet {
	var out []*net.IPNet
	for _, c := range s.TrustedProxies {
		if _, n, err := net.ParseCIDR(c); err == nil {
			out = append(out, n)
		} else if ip := net.ParseIP(c); ip != nil {
			bits := 8 * len(ip.To16())
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
		}
	}
	return out
}

// Database selects the engine.
type Database struct {
	// Driver is "sqlite" or "postgres".
	Driver string `toml:"driver"`
	// DSN is a file path for SQLite, a connection URL for PostgreSQL.
	// Environment: AIDANTS_DATABASE_DSN.
	DSN string `toml:"dsn"`
	// MaxOpenConns bounds the readers' connection pool.
	MaxOpenConns int `toml:"max_open_conns"`
	// WALLimit bounds SQLite's write-ahead log (default "16MB").
	WALLimit Size `toml:"wal_limit"`
}

// Size is a number of bytes written "16MB", "512KB", "1GB" (powers of
// 1024) in TOML.
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (z *Size) UnmarshalText(b []byte) error {
	s := strings.ToUpper(strings.TrimSpace(string(b)))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != s {
		return fmt.Errorf("invalid size %q (examples: 16MB, 512KB)", b)
	}
	*z = Size(n * mult)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (z Size) MarshalText() ([]byte, error) { return []byte(fmt.Sprintf("%dB", int64(z))), nil }

// Session holds the browser session settings.
type Session struct {
	// Secret signs and encrypts session cookies: at least 32 random bytes,
	// base64. Environment: AIDANTS_SESSION_SECRET.
	Secret                string   `toml:"secret"`
	IdleTimeout           Duration `toml:"idle_timeout"`
	AbsoluteTimeout       Duration `toml:"absolute_timeout"`
	StepUpMaxAge          Duration `toml:"step_up_max_age"`
	UsagerIdleTimeout     Duration `toml:"usager_idle_timeout"`
	UsagerAbsoluteTimeout Duration `toml:"usager_absolute_timeout"`
}

// OIDCClient is this instance as a relying party of an identity provider.
type OIDCClient struct {
	Issuer   string `toml:"issuer"`
	ClientID string `toml:"client_id"`
	// ClientSecret authenticates the instance at the token endpoint.
	// Environment: AIDANTS_AIDANTS_PROVIDER_CLIENT_SECRET or
	// AIDANTS_FRANCECONNECT_CLIENT_SECRET.
	ClientSecret string   `toml:"client_secret"`
	Scopes       []string `toml:"scopes"`
	// ACRValues is sent as acr_values when set, and the answer's acr
	// must meet it: one of the values asked, or for FranceConnect's eIDAS
	// levels (eidas1 < eidas2 < eidas3) one at least as high as the lowest
	// asked.
	ACRValues string `toml:"acr_values"`
	// RequireMFA refuses a sign-in that does not show a second factor:
	// an amr value listed in MFAAMRs, or an acr listed in MFAACRs.
	RequireMFA bool `toml:"require_mfa"`
	// MFAAMRs are the RFC 8176 amr values that count as a second factor
	// (default ["mfa"]).
	MFAAMRs []string `toml:"mfa_amrs"`
	MFAACRs []string `toml:"mfa_acrs"`
}

// AidantsProvider is the aidants' identity provider: a relying party
// like any, and the way a pending aidant is found at their first sign-in.
type AidantsProvider struct {
	OIDCClient
	// MatchEmailRequiresVerified binds a pending aidant (added by email)
	// to the identity that signs in with that email only when the
	// provider says email_verified: true. An operator whose provider
	// vouches for every address it sends may set it to false.
	MatchEmailRequiresVerified bool `toml:"match_email_requires_verified"`
}

// AMRValues are the authentication method references of the IANA
// registry (RFC 8176 §2, §6.1): what mfa_amrs may list.
var AMRValues = []string{"face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin", "pop",
	"pwd", "rba", "retina", "sc", "sms", "swk", "tel", "user", "vbm", "wia"}

// Audit configures the tamper-evident log.
type Audit struct {
	// Origin is the first line of every checkpoint and the name of the
	// signing key, e.g. "aidants.example.fr/audit".
	Origin string `toml:"origin"`
	// SigningKeyFile holds the note signer key (PRIVATE+KEY+...).
	// Environment: AIDANTS_AUDIT_SIGNING_KEY holds the key itself.
	SigningKeyFile string `toml:"signing_key_file"`
	SigningKey     string `toml:"-"`
	// WitnessQuorum is how many of the witnesses must cosign a checkpoint
	// before /audit/checkpoint serves it (0: no witnesses).
	WitnessQuorum int `toml:"witness_quorum"`
	// WitnessInterval is the most often checkpoints are sent to the
	// witnesses.
	WitnessInterval Duration `toml:"witness_interval"`
	// Witnesses are the independent witnesses of the log
	// (c2sp.org/tlog-witness).
	Witnesses []Witness `toml:"witness"`
	// WitnessStateFile keeps, outside the database, the newest checkpoint
	// the witnesses cosigned: never in a backup, never restored from one.
	// Default: "witness-state" beside the SQLite database; required with
	// PostgreSQL.
	WitnessStateFile string `toml:"witness_state_file"`
}

// Witness is one witness of the log.
type Witness struct {
	// URL is the witness's base URL: the instance POSTs to
	// <url>/add-checkpoint.
	URL string `toml:"url"`
	// Key is the witness's cosignature/v1 verifier key,
	// <name>+<hex8>+<base64>.
	Key string `toml:"key"`
}

// StateFile is the witness state file, its default applied.
func (a Audit) StateFile(db Database) string {
	if a.WitnessStateFile != "" || db.Driver != "sqlite" {
		return a.WitnessStateFile
	}
	return filepath.Join(filepath.Dir(db.DSN), "witness-state")
}

// Keys configures the JOSE signing keys kept in the database.
type Keys struct {
	// EncryptionSecret encrypts private signing keys at rest: at least 32
	// random bytes, base64. Environment: AIDANTS_KEYS_SECRET.
	EncryptionSecret string `toml:"encryption_secret"`
}

// Mandate configures mandates.
type Mandate struct {
	ConsentLinkTTL Duration `toml:"consent_link_ttl"`
}

// Provider configures the OpenID provider for public services.
type Provider struct {
	AccessTokenTTL Duration `toml:"access_token_ttl"`
	IDTokenTTL     Duration `toml:"id_token_ttl"`
	// PairwiseSecret derives the per-service identifiers; it must never
	// change once services have seen them. Environment:
	// AIDANTS_PAIRWISE_SECRET.
	PairwiseSecret string `toml:"pairwise_secret"`
}

// Limits bounds what one client address (and, for tokens, one client)
// may ask per Window; past it, 429 with Retry-After. 0 means no limit.
// The defaults are far above what a busy France Services counter asks.
type Limits struct {
	Window Duration `toml:"window"`
	// SignIn: starts of a sign-in (aidants, persons) and the identity
	// providers' callbacks.
	SignIn int `toml:"sign_in"`
	// ConsentLinks: openings of a remote consent link.
	ConsentLinks int `toml:"consent_links"`
	// TokenFailures: failed requests to /oidc/token, per address and per
	// client_id.
	TokenFailures int `toml:"token_failures"`
	// Verify: checks of a signed mandate at /mandats/verify.
	Verify int `toml:"verify"`
	// AuditorAPI: queries of the auditors' API.
	AuditorAPI int `toml:"auditor_api"`
}

// Mail configures outgoing email: what people and aidants are told
// (SPEC §5.6).
type Mail struct {
	// SMTPURL is the relay, with its credentials:
	// smtps://user:password@host:465 (TLS from the first byte) or
	// smtp://user:password@host:587 (STARTTLS, required except on
	// loopback). Empty: development mode keeps messages in its own
	// mailbox (/dev/courriels); elsewhere no message is sent.
	// Environment: AIDANTS_SMTP_URL.
	SMTPURL string `toml:"smtp_url"`
	// From is the sender of every message, "Aidants <ne-pas-repondre@…>".
	// Required with an SMTP URL outside development mode.
	From string `toml:"from"`
	// CAFile, when set, is a PEM file of the authorities the relay's
	// certificate must chain to, instead of the system's.
	CAFile string `toml:"ca_file"`
	// Off turns outgoing mail off, the development mailbox included
	// (AIDANTS_SMTP_URL=none in development mode): for measurements.
	Off bool `toml:"-"`
	// RetryAfter is the wait after a first failed delivery, doubled after
	// each further one up to an hour (default 30s).
	RetryAfter Duration `toml:"retry_after"`
}

// Log configures the application log.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// Duration is a time.Duration written as "30m", "12h" in TOML.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (examples: 90s, 30m, 12h)", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Default returns the configuration used when a key is absent.
func Default() Config {
	return Config{
		Server: Server{
			PublicURL:       "http://127.0.0.1:8080",
			Listen:          "127.0.0.1:8080",
			ShutdownTimeout: Duration(10 * time.Second),
		},
		Database: Database{Driver: "sqlite", DSN: "data/aidants.db", MaxOpenConns: 8, WALLimit: 16 << 20},
		Session: Session{
			IdleTimeout:           Duration(30 * time.Minute),
			AbsoluteTimeout:       Duration(12 * time.Hour),
			StepUpMaxAge:          Duration(15 * time.Minute),
			UsagerIdleTimeout:     Duration(10 * time.Minute),
			UsagerAbsoluteTimeout: Duration(1 * time.Hour),
		},
		AidantsProvider: AidantsProvider{
			OIDCClient: OIDCClient{
				Scopes:     []string{"openid", "given_name", "usual_name", "email", "uid", "siret"},
				RequireMFA: true,
				MFAAMRs:    []string{"mfa"},
			},
			MatchEmailRequiresVerified: true,
		},
		FranceConnect: OIDCClient{
			Scopes:    []string{"openid", "given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry", "email"},
			ACRValues: "eidas1",
			MFAAMRs:   []string{"mfa"},
		},
		Audit:    Audit{WitnessInterval: Duration(2 * time.Second)},
		Mandate:  Mandate{ConsentLinkTTL: Duration(48 * time.Hour)},
		Provider: Provider{AccessTokenTTL: Duration(5 * time.Minute), IDTokenTTL: Duration(5 * time.Minute)},
		Limits:   Limits{Window: Duration(time.Minute), SignIn: 120, ConsentLinks: 30, TokenFailures: 30, Verify: 60, AuditorAPI: 1200},
		Log:      Log{Level: "info", Format: "text"},
	}
}

// Parse decodes a TOML document over the defaults. Unknown keys are errors.
func Parse(data []byte) (Config, error) {
	cfg := Default()
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			var errs []error
			for _, e := range strict.Errors {
				line, _ := e.Position()
				errs = append(errs, fmt.Errorf("line %d: unknown key %q", line, strings.Join(e.Key(), ".")))
			}
			return cfg, errors.Join(errs...)
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, _ := de.Position()
			return cfg, fmt.Errorf("line %d: %s", line, strings.TrimPrefix(de.Error(), "toml: "))
		}
		return cfg, err
	}
	return cfg, nil
}

// Load reads a file, decodes it and applies the environment. It does not
// validate: callers call Validate, which reports every problem at once.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.ApplyEnv(os.LookupEnv)
	return cfg, nil
}

// Env lists the environment variables that override secrets.
var Env = map[string]string{
	"AIDANTS_DATABASE_DSN":                   "database.dsn",
	"AIDANTS_SESSION_SECRET":                 "session.secret",
	"AIDANTS_AIDANTS_PROVIDER_CLIENT_SECRET": "aidants_provider.client_secret",
	"AIDANTS_FRANCECONNECT_CLIENT_SECRET":    "franceconnect.client_secret",
	"AIDANTS_AUDIT_SIGNING_KEY":              "audit signing key (PRIVATE+KEY+...)",
	"AIDANTS_KEYS_SECRET":                    "keys.encryption_secret",
	"AIDANTS_PAIRWISE_SECRET":                "provider.pairwise_secret",
	"AIDANTS_METRICS_TOKEN":                  "server.metrics_token",
	"AIDANTS_SMTP_URL":                       "mail.smtp_url",
}

// ApplyEnv replaces secrets by the environment variables that are set.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) {
	set := func(dst *string, name string) {
		if v, ok := lookup(name); ok && v != "" {
			*dst = v
		}
	}
	set(&c.Database.DSN, "AIDANTS_DATABASE_DSN")
	set(&c.Session.Secret, "AIDANTS_SESSION_SECRET")
	set(&c.AidantsProvider.ClientSecret, "AIDANTS_AIDANTS_PROVIDER_CLIENT_SECRET")
	set(&c.FranceConnect.ClientSecret, "AIDANTS_FRANCECONNECT_CLIENT_SECRET")
	set(&c.Audit.SigningKey, "AIDANTS_AUDIT_SIGNING_KEY")
	set(&c.Keys.EncryptionSecret, "AIDANTS_KEYS_SECRET")
	set(&c.Provider.PairwiseSecret, "AIDANTS_PAIRWISE_SECRET")
	set(&c.Server.MetricsToken, "AIDANTS_METRICS_TOKEN")
	set(&c.Mail.SMTPURL, "AIDANTS_SMTP_URL")
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	u, err := url.Parse(c.Server.PublicURL)
	switch {
	case c.Server.PublicURL == "":
		bad("server.public_url is required")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		bad("server.public_url %q is not an absolute http(s) URL", c.Server.PublicURL)
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		bad("server.public_url must use https outside loopback")
	case u.Path != "" && u.Path != "/":
		bad("server.public_url must not have a path")
	}
	if _, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
		bad("server.listen %q is not host:port", c.Server.Listen)
	} else if c.Dev && !IsLoopbackAddr(c.Server.Listen) {
		bad("server.listen %q: development mode listens on loopback only", c.Server.Listen)
	}
	for _, p := range c.Server.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			bad("server.trusted_proxies: %q is not an address or a CIDR", p)
		}
	}
	if c.Server.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.Server.MetricsListen); err != nil {
			bad("server.metrics_listen %q is not host:port", c.Server.MetricsListen)
		}
	}
	if t := c.Server.MetricsToken; t != "" && len(t) < 16 {
		bad("server.metrics_token must be at least 16 characters (or AIDANTS_METRICS_TOKEN)")
	}
	switch c.Database.Driver {
	case "sqlite", "postgres":
	default:
		bad("database.driver %q must be \"sqlite\" or \"postgres\"", c.Database.Driver)
	}
	if c.Database.DSN == "" {
		bad("database.dsn is required (or AIDANTS_DATABASE_DSN)")
	}
	if c.Database.MaxOpenConns < 1 {
		bad("database.max_open_conns must be at least 1")
	}
	if c.Database.WALLimit < 1<<20 {
		bad("database.wal_limit must be at least 1MB")
	}
	checkSecret := func(key, env, v string) {
		if v == "" {
			bad("%s is required (or %s)", key, env)
			return
		}
		if b, err := base64.StdEncoding.DecodeString(v); err != nil || len(b) < 32 {
			bad("%s must be at least 32 random bytes in base64 (openssl rand -base64 32)", key)
		}
	}
	checkSecret("session.secret", "AIDANTS_SESSION_SECRET", c.Session.Secret)
	checkSecret("keys.encryption_secret", "AIDANTS_KEYS_SECRET", c.Keys.EncryptionSecret)
	checkSecret("provider.pairwise_secret", "AIDANTS_PAIRWISE_SECRET", c.Provider.PairwiseSecret)
	positive := func(key string, d Duration) {
		if d <= 0 {
			bad("%s must be a positive duration", key)
		}
	}
	positive("server.shutdown_timeout", c.Server.ShutdownTimeout)
	positive("session.idle_timeout", c.Session.IdleTimeout)
	positive("session.absolute_timeout", c.Session.AbsoluteTimeout)
	positive("session.step_up_max_age", c.Session.StepUpMaxAge)
	positive("session.usager_idle_timeout", c.Session.UsagerIdleTimeout)
	positive("session.usager_absolute_timeout", c.Session.UsagerAbsoluteTimeout)
	positive("mandate.consent_link_ttl", c.Mandate.ConsentLinkTTL)
	positive("provider.access_token_ttl", c.Provider.AccessTokenTTL)
	positive("provider.id_token_ttl", c.Provider.IDTokenTTL)
	positive("limits.window", c.Limits.Window)
	for key, n := range map[string]int{"sign_in": c.Limits.SignIn, "consent_links": c.Limits.ConsentLinks,
		"token_failures": c.Limits.TokenFailures, "verify": c.Limits.Verify, "auditor_api": c.Limits.AuditorAPI} {
		if n < 0 {
			bad("limits.%s must not be negative (0: no limit)", key)
		}
	}
	if c.Session.IdleTimeout > c.Session.AbsoluteTimeout {
		bad("session.idle_timeout must not exceed session.absolute_timeout")
	}
	for _, p := range []struct {
		key string
		c   OIDCClient
	}{{"aidants_provider", c.AidantsProvider.OIDCClient}, {"franceconnect", c.FranceConnect}} {
		for _, v := range p.c.MFAAMRs {
			if !contains(AMRValues, v) {
				bad("%s.mfa_amrs: %q is not an amr value of RFC 8176 (%s)", p.key, v, strings.Join(AMRValues, ", "))
			}
		}
		for _, v := range p.c.MFAACRs {
			if v == "" || strings.ContainsAny(v, " \t\n") {
				bad("%s.mfa_acrs: %q is not an acr value (no spaces, not empty)", p.key, v)
			}
		}
		if p.c.RequireMFA && len(p.c.MFAAMRs) == 0 && len(p.c.MFAACRs) == 0 {
			bad("%s.require_mfa: mfa_amrs or mfa_acrs must say what counts as a second factor", p.key)
		}
		if c.Dev && p.c.Issuer == "" {
			continue // the development providers fill these in
		}
		iu, err := url.Parse(p.c.Issuer)
		if p.c.Issuer == "" || err != nil || iu.Host == "" || (iu.Scheme != "https" && !(iu.Scheme == "http" && IsLoopbackHost(iu.Hostname()))) {
			bad("%s.issuer must be an https URL", p.key)
		}
		if p.c.ClientID == "" {
			bad("%s.client_id is required", p.key)
		}
		if p.c.ClientSecret == "" {
			bad("%s.client_secret is required (or its environment variable)", p.key)
		}
		if !contains(p.c.Scopes, "openid") {
			bad("%s.scopes must contain \"openid\"", p.key)
		}
	}
	if c.Audit.Origin == "" {
		bad("audit.origin is required (for example \"aidants.example.fr/audit\")")
	} else if strings.ContainsAny(c.Audit.Origin, "\n+ ") {
		bad("audit.origin must not contain spaces, newlines or '+'")
	}
	if c.Audit.SigningKey == "" && c.Audit.SigningKeyFile == "" {
		bad("audit.signing_key_file is required (or AIDANTS_AUDIT_SIGNING_KEY)")
	}
	if c.Database.Driver == "postgres" && c.Audit.WitnessStateFile == "" {
		bad("audit.witness_state_file is required with PostgreSQL (a file of this machine, outside any backup)")
	}
	if q := c.Audit.WitnessQuorum; q < 0 || q > len(c.Audit.Witnesses) {
		bad("audit.witness_quorum must be between 0 and the number of [[audit.witness]] (%d)", len(c.Audit.Witnesses))
	}
	positive("audit.witness_interval", c.Audit.WitnessInterval)
	seen := map[string]bool{}
	for i, w := range c.Audit.Witnesses {
		// Plain http is allowed: what a witness answers is signed, not
		// secret, and litewitness serves http behind a proxy or bastion.
		if wu, err := url.Parse(w.URL); w.URL == "" || err != nil || wu.Host == "" || (wu.Scheme != "https" && wu.Scheme != "http") {
			bad("audit.witness[%d].url %q is not an absolute http(s) URL", i, w.URL)
		}
		if parts := strings.SplitN(w.Key, "+", 3); len(parts) != 3 || parts[0] == "" || len(parts[1]) != 8 || parts[2] == "" {
			bad("audit.witness[%d].key must be a cosignature verifier key <name>+<hex8>+<base64>", i)
		} else if seen[parts[0]] {
			bad("audit.witness[%d].key: witness %q is listed twice", i, parts[0])
		} else {
			seen[parts[0]] = true
		}
	}
	errs = append(errs, c.Mail.check(c.Dev)...)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level %q must be debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format %q must be text or json", c.Log.Format)
	}
	return errors.Join(errs...)
}

// check reports the problems of the [mail] table. The SMTP URL holds a
// password: no message repeats it, nor the parser's error that quotes it.
func (m Mail) check(dev bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.SMTPURL != "" {
		const form = "smtps://user:password@host:465 or smtp://user:password@host:587"
		u, err := url.Parse(m.SMTPURL)
		switch {
		case err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Opaque != "":
			bad("mail.smtp_url must be %s (its value is not repeated here: it holds a password)", form)
		case u.Hostname() == "":
			bad("mail.smtp_url has no host (expected %s)", form)
		case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			bad("mail.smtp_url must not have a path, query or fragment (expected %s)", form)
		case u.Port() != "":
			if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
				bad("mail.smtp_url has an invalid port")
			}
		}
		if m.From == "" && !dev {
			bad("mail.from is required with mail.smtp_url (for example \"Aidants <ne-pas-repondre@aidants.example.fr>\")")
		}
	}
	if m.From != "" {
		if a, err := mail.ParseAddress(m.From); err != nil || !strings.Contains(a.Address, "@") || strings.ContainsAny(m.From, "\r\n") {
			bad("mail.from %q is not an email address (for example \"Aidants <ne-pas-repondre@aidants.example.fr>\")", m.From)
		}
	}
	if m.RetryAfter < 0 || time.Duration(m.RetryAfter) > time.Hour {
		bad("mail.retry_after must be between 0s (the default, 30s) and 1h")
	}
	if m.CAFile != "" {
		pem, err := os.ReadFile(m.CAFile)
		if err != nil {
			bad("mail.ca_file: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			bad("mail.ca_file %s holds no PEM certificate", m.CAFile)
		}
	}
	return errs
}

// SecureCookies tells whether cookies must carry the Secure attribute:
// always, except for a plain-http loopback public URL (development).
func (c *Config) SecureCookies() bool {
	u, err := url.Parse(c.Server.PublicURL)
	return err != nil || u.Scheme != "http" || !IsLoopbackHost(u.Hostname())
}

// IsLoopbackHost tells whether host names the local machine.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsLoopbackAddr tells whether a host:port listen address is on loopback.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && IsLoopbackHost(host)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
