// Command aidants runs the Aidants service and its operator tools.
//
// It is the only place that knows every concrete type: it loads the
// configuration, opens the database, wires the services, mounts the
// handlers and handles signals. run is what main and the tests call.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "aidants: "+oneLine(err))
		var ue *usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake in the command line itself.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// oneLine joins the lines of an error (errors.Join) into one.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"serve":                {"run the service: serve [--config FILE | --dev [--data DIR]] [--listen ADDR]", cmdServe},
		"migrate":              {"apply database migrations", cmdMigrate},
		"check":                {"check the configuration, the database, the journal, the identity providers and the witnesses before going live; changes nothing", cmdCheck},
		"version":              {"print the version", cmdVersion},
		"org add":              {"add an organisation: --name NAME --siret SIRET [--demarches code,code]", cmdOrgAdd},
		"org list":             {"list organisations", cmdOrgList},
		"stats":                {"print the statistics of the last 12 months (mandates per month, actions, remote consents): [--org ID|SIRET]", cmdStats},
		"org update":           {"change an organisation: --siret SIRET [--name NAME] [--demarches code,code|all] [--active true|false]", cmdOrgUpdate},
		"aidant add":           {"add an aidant: --org SIRET --email EMAIL --given-name G --family-name F --habilitated-until YYYY-MM-DD [--referent]", cmdAidantAdd},
		"aidant list":          {"list aidants: [--org SIRET]", cmdAidantList},
		"aidant disable":       {"disable an aidant everywhere: --email EMAIL --reason TEXT (kept erasable; the journal keeps its SHA-256)", cmdAidantDisable},
		"aidant enable":        {"re-enable an aidant: --email EMAIL", cmdAidantEnable},
		"aidant habilitate":    {"set the end of an aidant's habilitation: --email EMAIL --until YYYY-MM-DD", cmdAidantHabilitate},
		"audit verify":         {"verify the whole audit log: [--checkpoint FILE]", cmdAuditVerify},
		"audit checkpoint":     {"print the newest witnessed checkpoint, with its cosignatures: [--latest] for the newest signed one", cmdAuditCheckpoint},
		"audit keygen":         {"generate a checkpoint signing key: --origin ORIGIN [--out FILE]", cmdAuditKeygen},
		"audit verify-receipt": {"check a receipt offline: FILE [--key VKEY] [--witness VKEY]… [--quorum N] (default: this instance's key and witnesses)", cmdAuditVerifyReceipt},
		"audit monitor":        {"check any instance's journal from outside: --url BASE --key FILE [--witness VKEY]… [--quorum N] --state FILE", cmdAuditMonitor},
		"audit erase-text":     {"erase a free text (a reason, an objection) whose SHA-256 events carry: --sha256 HASH", cmdAuditEraseText},
		"audit new-origin":     {"continue the journal under the configured new origin after a rollback: --reason TEXT", cmdAuditNewOrigin},
		"mandate verify":       {"verify a signed mandate: FILE (a .jwt file, or - for stdin)", cmdMandateVerify},
		"keys rotate":          {"new signing keys for ID tokens and mandates (old ones stay published until what they signed expires)", cmdKeysRotate},
		"auditor add":          {"register an auditor: --name N (--jwks FILE | --jwks-uri URL) (--all | --organisations SIRET,… | --services client_id,…)", cmdAuditorAdd},
		"auditor list":         {"list auditors", cmdAuditorList},
		"backup":               {"write a consistent copy of the database while serving: backup FILE", cmdBackup},
		"service add":          {"register a public service: --name N --redirect-uri U [--post-logout-uri U] --demarches code,code [--auth private_key_jwt --jwks FILE | --auth client_secret_basic|client_secret_post] [--id-token-alg RS256] [--userinfo-signed]", cmdServiceAdd},
		"service list":         {"list public services", cmdServiceList},
		"service update":       {"change a public service: --client-id ID [--name N] [--demarches code,code] [--id-token-alg ES256|RS256] [--userinfo-signed true|false]", cmdServiceUpdate},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		if len(args) == 0 {
			return usagef("a command is required")
		}
		return nil
	}
	if len(args) >= 2 {
		if c, ok := cmds[args[0]+" "+args[1]]; ok {
			return c.run(ctx, args[2:], stdout, stderr)
		}
	}
	if c, ok := cmds[args[0]]; ok {
		return c.run(ctx, args[1:], stdout, stderr)
	}
	var subs []string
	for name := range cmds {
		if strings.HasPrefix(name, args[0]+" ") {
			subs = append(subs, strings.TrimPrefix(name, args[0]+" "))
		}
	}
	if len(subs) > 0 {
		sort.Strings(subs)
		return usagef("%s: expected one of %s", args[0], strings.Join(subs, ", "))
	}
	return usagef("unknown command %q (see aidants help)", args[0])
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "Usage: aidants COMMAND [--config FILE | --dev [--data DIR]] [flags]")
	fmt.Fprintln(w)
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", n, cmds[n].summary)
	}
}

// flags is a flag set whose errors are one line, and which accepts flags
// after positional arguments ("mandate verify FILE --dev").
type flags struct {
	*flag.FlagSet
	name string
}

func newFlags(name string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flags{FlagSet: fs, name: name}
}

// parse parses args and returns the positional arguments.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, usagef("%s: see aidants help", f.name)
			}
			return nil, usagef("%s: %v", f.name, err)
		}
		args = f.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// required reports every missing required string flag at once.
func (f *flags) required(names ...string) error {
	var missing []string
	for _, n := range names {
		if fl := f.Lookup(n); fl == nil || fl.Value.String() == "" {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) > 0 {
		return usagef("%s: %s required", f.name, strings.Join(missing, ", ")+map[bool]string{true: " is", false: " are"}[len(missing) == 1])
	}
	return nil
}

func cmdVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	f := newFlags("version")
	if _, err := f.parse(args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "aidants "+version)
	return nil
}
