package config_test

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"aidants/config"
)

func TestExampleParsesAndDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data)
	if err != nil {
		t.Fatalf("config.example.toml: %v", err)
	}
	// Every key of the struct is written in the example.
	for _, key := range keys(reflect.TypeOf(cfg), "") {
		section, name, _ := strings.Cut(key, ".")
		if table, field, ok := strings.Cut(key, "[]."); ok {
			// An array of tables: [[audit.witness]] with its keys.
			section, name = "["+table+"]", field
		}
		if !strings.Contains(string(data), "["+section+"]") || !containsKey(string(data), section, name) {
			t.Errorf("config.example.toml does not document %s", key)
		}
	}
	// With its secrets given by the environment, the example is valid.
	env := map[string]string{
		"AIDANTS_SESSION_SECRET":                 "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
		"AIDANTS_KEYS_SECRET":                    "a2V5c2tleXNrZXlza2V5c2tleXNrZXlza2V5c2tleXNrZXlz",
		"AIDANTS_PAIRWISE_SECRET":                "cGFpcndpc2VwYWlyd2lzZXBhaXJ3aXNlcGFpcndpc2VwYWly",
		"AIDANTS_AIDANTS_PROVIDER_CLIENT_SECRET": "x",
		"AIDANTS_FRANCECONNECT_CLIENT_SECRET":    "y",
	}
	cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	cfg.AidantsProvider.ClientID, cfg.FranceConnect.ClientID = "a", "b"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("example with secrets from the environment: %v", err)
	}
	if cfg.Session.IdleTimeout.D().Minutes() != 30 || cfg.Database.Driver != "sqlite" {
		t.Fatalf("unexpected values: %+v", cfg.Session)
	}
}

// keys lists "section.key" for every TOML key of the struct.
func keys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			// An embedded struct: its keys are the outer table's.
			out = append(out, keys(f.Type, prefix)...)
			continue
		}
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && prefix == "" {
			out = append(out, keys(f.Type, tag)...)
			continue
		}
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			for _, k := range keys(f.Type.Elem(), prefix+"."+tag+"[]") {
				out = append(out, k)
			}
			continue
		}
		out = append(out, prefix+"."+tag)
	}
	return out
}

func containsKey(doc, section, name string) bool {
	_, rest, ok := strings.Cut(doc, "["+section+"]")
	if !ok {
		return false
	}
	if next := strings.Index(rest, "\n["); next >= 0 {
		rest = rest[:next]
	}
	for _, line := range strings.Split(rest, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), name+" =") {
			return true
		}
	}
	return false
}

func TestUnknownKeysAreRejected(t *testing.T) {
	_, err := config.Parse([]byte("[server]\nlisten = \"127.0.0.1:1\"\npublik_url = \"x\"\n[databse]\ndriver = \"sqlite\"\n"))
	if err == nil {
		t.Fatal("unknown keys were accepted")
	}
	for _, want := range []string{"server.publik_url", "databse"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[database]
driver = "mysql"
[session]
idle_timeout = "-5m"
`))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if err == nil {
		t.Fatal("a config with two mistakes validated")
	}
	for _, want := range []string{`database.driver "mysql"`, "session.idle_timeout must be a positive duration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not report %q:\n%v", want, err)
		}
	}
}

func TestBadValuesAreReportedWithTheirLine(t *testing.T) {
	_, err := config.Parse([]byte("[session]\nidle_timeout = \"soon\"\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "invalid duration") {
		t.Fatalf("err = %v, want the line and the reason", err)
	}
}

func TestSecretsComeFromTheEnvironment(t *testing.T) {
	cfg := config.Default()
	cfg.Session.Secret = "from-file"
	cfg.ApplyEnv(func(k string) (string, bool) {
		if k == "AIDANTS_SESSION_SECRET" {
			return "from-env", true
		}
		return "", false
	})
	if cfg.Session.Secret != "from-env" {
		t.Fatalf("session.secret = %q, want the environment's", cfg.Session.Secret)
	}
}

func TestDevModeListensOnLoopbackOnly(t *testing.T) {
	cfg := config.Default()
	cfg.Dev = true
	cfg.Server.Listen = "0.0.0.0:8080"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Fatalf("err = %v, want a loopback refusal", err)
	}
}

func TestSecureCookiesExceptPlainHTTPLoopback(t *testing.T) {
	for url, want := range map[string]bool{
		"http://127.0.0.1:8080":      false,
		"http://localhost:8080":      false,
		"https://aidants.example.fr": true,
		"https://127.0.0.1:8443":     true,
	} {
		cfg := config.Default()
		cfg.Server.PublicURL = url
		if got := cfg.SecureCookies(); got != want {
			t.Errorf("%s: SecureCookies = %v, want %v", url, got, want)
		}
	}
}

func TestWitnessSettingsAreChecked(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[database]
driver = "postgres"
dsn = "postgres://x"
[audit]
witness_quorum = 3
witness_interval = "0s"
[[audit.witness]]
url = "witness.example"
key = "not a key"
[[audit.witness]]
url = "https://w2.example"
key = "w2.example+01020304+BA+A"
[[audit.witness]]
url = "https://w3.example"
key = "w2.example+05060708+BAAA"
`))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	for _, want := range []string{"audit.witness_state_file is required with PostgreSQL", "audit.witness_interval must be a positive duration",
		`audit.witness[0].url "witness.example"`, "audit.witness[0].key must be a cosignature verifier key", `witness "w2.example" is listed twice`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate: %v\nwant %q", err, want)
		}
	}
	cfg.Audit.WitnessQuorum = 4
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "audit.witness_quorum must be between 0 and the number of [[audit.witness]] (3)") {
		t.Errorf("quorum above the witnesses: %v", err)
	}
	sq := config.Default()
	sq.Database.DSN = "/var/lib/aidants/aidants.db"
	if got := sq.Audit.StateFile(sq.Database); got != "/var/lib/aidants/witness-state" {
		t.Errorf("default state file %q", got)
	}
}

func TestSecondFactorAndEmailMatchingSettings(t *testing.T) {
	cfg := config.Default()
	if !slices.Equal(cfg.AidantsProvider.MFAAMRs, []string{"mfa"}) || !slices.Equal(cfg.FranceConnect.MFAAMRs, []string{"mfa"}) {
		t.Errorf("default mfa_amrs = %v, %v, want [mfa]", cfg.AidantsProvider.MFAAMRs, cfg.FranceConnect.MFAAMRs)
	}
	if !cfg.AidantsProvider.MatchEmailRequiresVerified {
		t.Error("match_email_requires_verified is not true by default")
	}

	cfg, err := config.Parse([]byte(`
[aidants_provider]
mfa_amrs = ["otp", "hwk", "swk"]
mfa_acrs = ["https://proconnect.gouv.fr/assurance/consistency-checked-2fa"]
match_email_requires_verified = false
[franceconnect]
acr_values = "eidas2"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.AidantsProvider.MFAAMRs; !slices.Equal(got, []string{"otp", "hwk", "swk"}) || cfg.AidantsProvider.MatchEmailRequiresVerified {
		t.Errorf("parsed %v, match_email_requires_verified %v", got, cfg.AidantsProvider.MatchEmailRequiresVerified)
	}
	if err := cfg.Validate(); err != nil && strings.Contains(err.Error(), "mfa_") {
		t.Errorf("valid second-factor settings refused: %v", err)
	}

	// The franceconnect table has no email matching: the key is unknown there.
	if _, err := config.Parse([]byte("[franceconnect]\nmatch_email_requires_verified = false\n")); err == nil ||
		!strings.Contains(err.Error(), "franceconnect.match_email_requires_verified") {
		t.Errorf("match_email_requires_verified in [franceconnect]: %v, want an unknown key", err)
	}
}

func TestBadSecondFactorSettingsAreAllReported(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[aidants_provider]
require_mfa = true
mfa_amrs = []
mfa_acrs = []
[franceconnect]
mfa_amrs = ["mfa", "MFA", "2fa"]
mfa_acrs = ["eidas 2", ""]
`))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	for _, want := range []string{
		"aidants_provider.require_mfa: mfa_amrs or mfa_acrs must say what counts as a second factor",
		`franceconnect.mfa_amrs: "MFA" is not an amr value of RFC 8176`,
		`franceconnect.mfa_amrs: "2fa" is not an amr value of RFC 8176`,
		`franceconnect.mfa_acrs: "eidas 2" is not an acr value`,
		`franceconnect.mfa_acrs: "" is not an acr value`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate: %v\nwant %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), `"mfa" is not`) {
		t.Errorf("a registered value was refused: %v", err)
	}
}

func TestMailSettingsAreCheckedWithoutShowingThePassword(t *testing.T) {
	dir := t.TempDir()
	notPEM := dir + "/ca.txt"
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for _, c := range []struct {
		name string
		mail config.Mail
		dev  bool
		want []string // every problem reported, "" for none
	}{
		{"good smtps", config.Mail{SMTPURL: "smtps://u:Secr3t@smtp.example.fr:465", From: "Aidants <ne-pas-repondre@aidants.example.fr>"}, false, nil},
		{"good smtp on loopback, no credentials", config.Mail{SMTPURL: "smtp://127.0.0.1:1025", From: "ne-pas-repondre@aidants.example.fr"}, false, nil},
		{"development needs no sender", config.Mail{SMTPURL: "smtp://127.0.0.1:1025"}, true, nil},
		{"wrong scheme", config.Mail{SMTPURL: "https://u:Secr3t@smtp.example.fr", From: "a@b.fr"}, false, []string{"mail.smtp_url must be smtps://"}},
		{"unparsable", config.Mail{SMTPURL: "smtp://u:Secr3t@smtp example.fr:%zz", From: "a@b.fr"}, false, []string{"mail.smtp_url must be smtps://"}},
		{"no host", config.Mail{SMTPURL: "smtps://u:Secr3t@:465", From: "a@b.fr"}, false, []string{"mail.smtp_url has no host"}},
		{"a path", config.Mail{SMTPURL: "smtps://u:Secr3t@smtp.example.fr/x?y=1", From: "a@b.fr"}, false, []string{"must not have a path"}},
		{"bad port", config.Mail{SMTPURL: "smtps://u:Secr3t@smtp.example.fr:99999", From: "a@b.fr"}, false, []string{"invalid port"}},
		{"every problem at once", config.Mail{SMTPURL: "smtps://u:Secr3t@smtp.example.fr:465", CAFile: notPEM}, false,
			[]string{"mail.from is required with mail.smtp_url", "holds no PEM certificate"}},
		{"bad sender", config.Mail{SMTPURL: "smtps://u:Secr3t@smtp.example.fr", From: "Aidants", CAFile: dir + "/missing.pem"}, false,
			[]string{`mail.from "Aidants" is not an email address`, "mail.ca_file:"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Dev = c.dev
			cfg.Mail = c.mail
			err := cfg.Validate()
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("validate does not report %q:\n%s", w, msg)
				}
			}
			if c.want == nil && strings.Contains(msg, "mail.") {
				t.Errorf("a good [mail] table is refused:\n%s", msg)
			}
			if strings.Contains(msg, "Secr3t") {
				t.Errorf("an error shows the SMTP password:\n%s", msg)
			}
		})
	}
}

func TestSMTPURLComesFromTheEnvironment(t *testing.T) {
	cfg, err := config.Parse([]byte("[mail]\nsmtp_url = \"smtp://127.0.0.1:25\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ApplyEnv(func(k string) (string, bool) {
		if k == "AIDANTS_SMTP_URL" {
			return "smtps://u:p@smtp.example.fr:465", true
		}
		return "", false
	})
	if cfg.Mail.SMTPURL != "smtps://u:p@smtp.example.fr:465" {
		t.Fatalf("mail.smtp_url = %q, want the environment's", cfg.Mail.SMTPURL)
	}
}
