package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"aidants/audit"
)

func cmdAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("audit verify")
	env := addEnvFlags(f)
	cpFile := f.String("checkpoint", "", "an older signed checkpoint the log must extend")
	if _, err := f.parse(args); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	var old *audit.Checkpoint
	if *cpFile != "" {
		b, err := os.ReadFile(*cpFile)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		if old, err = audit.ParseCheckpoint(b, in.log.VerifierKey()); err != nil {
			return fmt.Errorf("audit verify: %s: %w", *cpFile, err)
		}
	}
	start := time.Now()
	res, err := audit.Verify(ctx, in.db, in.log.VerifierKey(), old)
	var te *audit.TamperError
	if errors.As(err, &te) {
		return fmt.Errorf("audit verify: FAILED at index %d: %s", te.Index, te.Msg)
	}
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	extra := ""
	if old != nil {
		extra = fmt.Sprintf(", extends the checkpoint of size %d", old.Size)
	}
	fmt.Fprintf(stdout, "audit verify: OK: %d events, root %s, %d checkpoints match%s (%s)\n",
		res.Size, base64.StdEncoding.EncodeToString(res.Root[:]), res.Checkpoints, extra, time.Since(start).Round(time.Millisecond))
	return nil
}

func cmdAuditCheckpoint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	in, err := openPlain(ctx, "audit checkpoint", args, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	cp, err := in.log.Latest(ctx)
	if err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	_, err = stdout.Write(cp.Note)
	return err
}

func cmdAuditKeygen(_ context.Context, args []string, stdout, _ io.Writer) error {
	f := newFlags("audit keygen")
	origin := f.String("origin", "", "the log's origin, e.g. aidants.example.fr/audit")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("origin"); err != nil {
		return err
	}
	skey, err := audit.GenerateKey(*origin)
	if err != nil {
		return err
	}
	vkey, err := audit.VerifierKey(skey)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# Keep the first line secret (audit.signing_key_file or AIDANTS_AUDIT_SIGNING_KEY).\n%s\n# Public verifier key, served at /audit/key:\n# %s\n", skey, vkey)
	return nil
}

// errInvalidReceipt makes verify-receipt exit non-zero after saying why.
type errInvalidReceipt struct{ msg string }

func (e errInvalidReceipt) Error() string { return "audit verify-receipt: invalid: " + e.msg }

func cmdAuditVerifyReceipt(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("audit verify-receipt")
	env := addEnvFlags(f)
	key := f.String("key", "", "the log's public key (<name>+<hash>+<base64>), from a source you trust; default: this instance's")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("audit verify-receipt: give one FILE (or - for stdin)")
	}
	var in io.Reader = os.Stdin
	if pos[0] != "-" {
		file, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("audit verify-receipt: %w", err)
		}
		defer file.Close()
		in = file
	}
	data, err := io.ReadAll(io.LimitReader(in, 1<<20))
	if err != nil {
		return fmt.Errorf("audit verify-receipt: %w", err)
	}
	vkey := *key
	if vkey == "" {
		// The instance's own key, from its configuration: no database,
		// no network.
		cfg, err := env.load("")
		if err != nil {
			return err
		}
		if vkey, err = audit.VerifierKey(cfg.Audit.SigningKey); err != nil {
			return err
		}
	}
	check, err := audit.VerifyReceipt(data, vkey, nil, 0)
	var re *audit.ReceiptError
	if errors.As(err, &re) {
		fmt.Fprintf(stdout, "invalid: %s\n", re.Msg)
		return errInvalidReceipt{re.Msg}
	}
	if err != nil {
		return fmt.Errorf("audit verify-receipt: %w", err)
	}
	ev := check.Event
	fmt.Fprintf(stdout, "valid: event %s of %s is in the log signed by %s\n", ev.Type, ev.Time.UTC().Format(time.RFC3339), strings.SplitN(vkey, "+", 2)[0])
	return nil
}
