package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"aidants/audit"
	"aidants/config"
	"aidants/monitor"
	"aidants/store"
	"aidants/witness"
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
	olds := []*audit.Checkpoint{}
	if old != nil {
		olds = append(olds, old)
	}
	// The checkpoint the witnesses cosigned, kept outside the database.
	statePath := in.cfg.Audit.StateFile(in.cfg.Database)
	kept, err := keptCheckpoint(ctx, in, statePath)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if kept != nil {
		olds = append(olds, kept)
	}
	start := time.Now()
	res, err := audit.VerifyWith(ctx, in.db, in.log.VerifierKey(), audit.VerifyOptions{Old: olds,
		Witnesses: in.witnessing.Verifiers(), Quorum: in.cfg.Audit.WitnessQuorum})
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
	if kept != nil {
		extra += fmt.Sprintf(", reaches the witnessed checkpoint of size %d kept in %s", kept.Size, statePath)
	}
	origins := ""
	if res.Origins > 1 {
		origins = fmt.Sprintf(" across %d origins", res.Origins)
	}
	fmt.Fprintf(stdout, "audit verify: OK: %d events%s, every column matches its event, root %s, %d checkpoints and %d witnessed checkpoints match%s (%s)\n",
		res.Size, origins, base64.StdEncoding.EncodeToString(res.Root[:]), res.Checkpoints, res.Witnessed, extra, time.Since(start).Round(time.Millisecond))
	return nil
}

// keptCheckpoint reads the witness state file's checkpoint and verifies it
// with the key of the origin it names (nil when there is no such file).
func keptCheckpoint(ctx context.Context, in *instance, path string) (*audit.Checkpoint, error) {
	kept, err := audit.ReadStateFile(path)
	if err != nil || kept == nil {
		return nil, err
	}
	name, _, _ := strings.Cut(string(kept), "\n")
	origins, err := audit.Origins(ctx, in.db)
	if err != nil {
		return nil, err
	}
	for _, o := range origins {
		if o.Name == name {
			cp, err := audit.ParseCheckpoint(kept, o.VKey)
			if err != nil {
				return nil, fmt.Errorf("the witness state file %s: %w", path, err)
			}
			return cp, nil
		}
	}
	return nil, fmt.Errorf("the witness state file %s holds a checkpoint of origin %q, which this database never had", path, name)
}

func cmdAuditCheckpoint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("audit checkpoint")
	env := addEnvFlags(f)
	latest := f.Bool("latest", false, "the newest signed checkpoint, witnessed or not")
	if _, err := f.parse(args); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	if *latest {
		cp, err := in.log.Latest(ctx)
		if err != nil {
			return fmt.Errorf("audit checkpoint: %w", err)
		}
		_, err = stdout.Write(cp.Note)
		return err
	}
	served, err := in.witnessing.Served(ctx)
	if errors.Is(err, witness.ErrNotYetWitnessed) {
		return fmt.Errorf("audit checkpoint: no checkpoint has reached the witness quorum yet (--latest prints the newest signed one)")
	}
	if err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	_, err = stdout.Write(served.Note)
	return err
}

func cmdAuditKeygen(_ context.Context, args []string, stdout, _ io.Writer) error {
	f := newFlags("audit keygen")
	origin := f.String("origin", "", "the log's origin, e.g. aidants.example.fr/audit")
	out := f.String("out", "", "write the signing key to FILE (mode 0600) and print the public key")
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
	if *out != "" {
		file, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("audit keygen: %w", err)
		}
		if _, err := file.WriteString(skey + "\n"); err != nil {
			file.Close()
			return fmt.Errorf("audit keygen: %w", err)
		}
		if err := file.Close(); err != nil {
			return fmt.Errorf("audit keygen: %w", err)
		}
		fmt.Fprintf(stdout, "audit keygen: the signing key of %s is in %s (keep it secret: audit.signing_key_file).\nPublic verifier key, served at /audit/key:\n%s\n", *origin, *out, vkey)
		return nil
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
	var witnesses stringList
	f.Var(&witnesses, "witness", "a witness's cosignature verifier key, from a source you trust (repeat for each); default: the configuration's")
	quorum := f.Int("quorum", -1, "how many of the witnesses must have cosigned (default: all those given, or the configuration's quorum)")
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
	vkey, q := *key, *quorum
	var vs []note.Verifier
	for _, w := range witnesses {
		v, err := witness.ParseVerifierKey(w)
		if err != nil {
			return usagef("audit verify-receipt: --witness %q: %v", w, err)
		}
		vs = append(vs, v)
	}
	if q < 0 {
		q = len(vs)
	}
	// The instance's own key and witnesses, from its configuration: no
	// database, no network. Never the receipt's own list.
	if vkey == "" || (len(vs) == 0 && (env.config != "" || env.dev)) {
		cfg, err := env.load("")
		if err != nil {
			return err
		}
		if vkey == "" {
			if vkey, err = audit.VerifierKey(cfg.Audit.SigningKey); err != nil {
				return err
			}
		}
		if len(vs) == 0 {
			wc, err := witnessConfig(cfg, nil)
			if err != nil {
				return err
			}
			for _, w := range wc.Witnesses {
				vs = append(vs, w.Verifier)
			}
			if *quorum < 0 {
				q = cfg.Audit.WitnessQuorum
			}
		}
	}
	if q > len(vs) {
		return usagef("audit verify-receipt: --quorum %d needs as many witness keys (%d given)", q, len(vs))
	}
	var head struct {
		Origin string `json:"origin"`
	}
	if json.Unmarshal(data, &head) == nil && head.Origin != "" && *key == "" && head.Origin != strings.SplitN(vkey, "+", 2)[0] {
		return fmt.Errorf("audit verify-receipt: this receipt is of the journal's origin %q, not of the instance's current origin %q: give %q's key with --key (its checkpoints are at /audit/origins/<n>/checkpoint)",
			head.Origin, strings.SplitN(vkey, "+", 2)[0], head.Origin)
	}
	check, err := audit.VerifyReceipt(data, vkey, vs, q)
	var re *audit.ReceiptError
	if errors.As(err, &re) {
		fmt.Fprintf(stdout, "invalid: %s\n", re.Msg)
		return errInvalidReceipt{re.Msg}
	}
	if errors.Is(err, audit.ErrReceiptNotWitnessed) {
		msg := fmt.Sprintf("not yet witnessed: the event is in the log signed by %s, but the receipt's checkpoint is cosigned by %d of the %d witnesses required; download the receipt again later",
			strings.SplitN(vkey, "+", 2)[0], len(check.Witnesses), q)
		fmt.Fprintln(stdout, msg)
		return errInvalidReceipt{msg}
	}
	if err != nil {
		return fmt.Errorf("audit verify-receipt: %w", err)
	}
	ev := check.Event
	cosigned := "no witness asked"
	if q > 0 {
		names := make([]string, len(check.Witnesses))
		for i, n := range check.Witnesses {
			names[i] = witness.Label(n)
		}
		cosigned = fmt.Sprintf("cosigned by %s (%d required)", strings.Join(names, ", "), q)
	}
	fmt.Fprintf(stdout, "valid: event %s of %s is in the log signed by %s, %s\n", ev.Type, ev.Time.UTC().Format(time.RFC3339), strings.SplitN(vkey, "+", 2)[0], cosigned)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func cmdAuditMonitor(ctx context.Context, args []string, stdout, _ io.Writer) error {
	f := newFlags("audit monitor")
	base := f.String("url", "", "the instance's public URL (/audit/ is appended)")
	keyFile := f.String("key", "", "a file holding the log's verifier key, as /audit/key serves it")
	var witnesses stringList
	f.Var(&witnesses, "witness", "a witness's cosignature verifier key (repeat for each)")
	quorum := f.Int("quorum", -1, "how many of the witnesses must have cosigned (default: all of them)")
	state := f.String("state", "", "a file keeping the last checkpoint seen, between runs")
	maxAge := f.Duration("max-age", 0, "fail when the quorum's cosignatures are older than this (e.g. 1h; default: no limit)")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("url", "key", "state"); err != nil {
		return err
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("audit monitor: %w", err)
	}
	kept, err := audit.ReadStateFile(*state)
	if err != nil {
		return fmt.Errorf("audit monitor: %w", err)
	}
	q := *quorum
	if q < 0 {
		q = len(witnesses)
	}
	res, err := monitor.Check(ctx, monitor.Options{BaseURL: *base, Key: string(key), Witnesses: witnesses, Quorum: q, State: kept, MaxAge: *maxAge})
	if monitor.IsProblem(err) {
		return fmt.Errorf("audit monitor: FAILED: %w", err)
	}
	if err != nil {
		return fmt.Errorf("audit monitor: %w", err)
	}
	if err := audit.WriteStateFile(*state, res.Note); err != nil {
		return fmt.Errorf("audit monitor: %w", err)
	}
	fmt.Fprintln(stdout, res.Line())
	return nil
}

func cmdAuditEraseText(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("audit erase-text")
	env := addEnvFlags(f)
	hash := f.String("sha256", "", "the text's hash, as the events carry it (detail."+audit.FreeTextKey+")")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("sha256"); err != nil {
		return err
	}
	in, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	err = in.log.Write(ctx, func(tx *audit.Tx) error { return tx.EraseFreeText(operator, strings.ToLower(*hash)) })
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("audit erase-text: no text with this hash, or it was erased already")
	}
	if err != nil {
		return fmt.Errorf("audit erase-text: %w", err)
	}
	fmt.Fprintf(stdout, "erased the text %s; the events keep its hash, and text.erased says when\n", strings.ToLower(*hash))
	return nil
}

func cmdAuditNewOrigin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("audit new-origin")
	env := addEnvFlags(f)
	reason := f.String("reason", "", "one line saying why (kept in the journal)")
	force := f.Bool("force", false, "go on although nothing tells how many events are lost (no state file, no witness answered)")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if err := f.required("reason"); err != nil {
		return err
	}
	cfg, err := env.load("")
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.Database.Driver, cfg.Database.DSN, store.Options{MaxOpenConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}
	origins, err := audit.Origins(ctx, db)
	if err != nil {
		return err
	}
	if len(origins) == 0 {
		return fmt.Errorf("audit new-origin: the journal is empty: nothing to continue")
	}
	cur := origins[len(origins)-1]
	if cur.Name == cfg.Audit.Origin {
		return fmt.Errorf("audit new-origin: the configured origin %q is already the journal's: first make a key for a new origin (aidants audit keygen --origin NEW --out FILE) and configure it (audit.origin, audit.signing_key_file)", cur.Name)
	}
	statePath := cfg.Audit.StateFile(cfg.Database)
	prev := audit.Previous{Reason: *reason}
	kept, err := audit.ReadStateFile(statePath)
	if err != nil {
		return err
	}
	if kept != nil {
		if name, _, _ := strings.Cut(string(kept), "\n"); name == cur.Name {
			if prev.Witnessed, err = audit.ParseCheckpoint(kept, cur.VKey); err != nil {
				return fmt.Errorf("audit new-origin: the witness state file %s: %w", statePath, err)
			}
		}
	}
	if prev.Witnessed == nil {
		// No checkpoint of this origin kept here: ask the witnesses what
		// they hold of it, so that the events lost are recorded.
		if prev.WitnessedSize, prev.WitnessedBy, err = askWitnesses(ctx, cfg, db, cur); err != nil {
			return fmt.Errorf("audit new-origin: %w", err)
		}
		if len(prev.WitnessedBy) == 0 && !*force {
			return fmt.Errorf("audit new-origin: neither the witness state file %s nor any witness tells how many events of %s were published: restore the state file, make a witness answer, or, knowing the loss goes unrecorded, give --force", statePath, cur.Name)
		}
	}
	cp, start, err := audit.StartOrigin(ctx, db, cfg.Audit.SigningKey, prev, time.Now())
	if err != nil {
		return fmt.Errorf("audit new-origin: %w", err)
	}
	lost := ""
	if w := prev.Witnessed; w != nil {
		lost = fmt.Sprintf("; its witnesses had cosigned %d events (%d lost, recorded in the first event)", w.Size, max(w.Size-(start-cur.Start), 0))
	} else if len(prev.WitnessedBy) > 0 {
		lost = fmt.Sprintf("; its witnesses hold %d events (%d lost, recorded in the first event)", prev.WitnessedSize, max(prev.WitnessedSize-(start-cur.Start), 0))
	}
	fmt.Fprintf(stdout, "audit new-origin: the journal goes on under %s from position %d; %s stops at %d events%s. Register %s and its key with each witness before starting the service, publish the new key, and purge any cache of /audit/tile/ (the old origin's tiles stay at /audit/origins/%d/) (docs/WITNESSES.md).\n",
		cp.Origin, start, cur.Name, start-cur.Start, lost, cp.Origin, cur.No)
	return nil
}

// askWitnesses asks each configured witness the size it holds of origin o,
// by sending o's newest stored checkpoint from size 0 (the answer is 409
// with its size, or a cosignature when it holds exactly that).
func askWitnesses(ctx context.Context, cfg config.Config, db *store.DB, o audit.Origin) (int64, []string, error) {
	var msg []byte
	err := db.R.GetContext(ctx, &msg, db.Rebind(`SELECT note FROM audit_checkpoints WHERE origin_no = ? ORDER BY gsize DESC LIMIT 1`), o.No)
	if errors.Is(err, sql.ErrNoRows) || len(cfg.Audit.Witnesses) == 0 {
		return 0, nil, nil // nothing to send, or nobody to ask
	}
	if err != nil {
		return 0, nil, err
	}
	cp, err := audit.ParseCheckpoint(msg, o.VKey)
	if err != nil {
		return 0, nil, err
	}
	wc, err := witnessConfig(cfg, nil)
	if err != nil {
		return 0, nil, err
	}
	var size int64
	var by []string
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, w := range wc.Witnesses {
		_, err := witness.AddCheckpoint(ctx, hc, w.URL, 0, nil, msg)
		var ce *witness.ConflictError
		switch {
		case err == nil:
			size, by = max(size, cp.Size), append(by, w.Verifier.Name())
		case errors.As(err, &ce):
			size, by = max(size, ce.Size), append(by, w.Verifier.Name())
		}
	}
	return size, by, nil
}
