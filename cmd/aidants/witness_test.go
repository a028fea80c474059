package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"aidants/audit"
	"aidants/config"
	"aidants/store"
	"aidants/store/storetest"
	"aidants/witness"
	"aidants/witness/litewitnesstest"
)

// journalSetup is a production configuration of one instance on one
// engine, with its own journal key and, optionally, real litewitness
// witnesses.
type journalSetup struct {
	t         *testing.T
	dir       string
	driver    string
	dsn       string
	origin    string
	keyFile   string
	vkey      string
	listen    string
	stateFile string
	witnesses []*litewitnesstest.Witness
	quorum    int
	// server holds more keys of the [server] table, tables more tables.
	server, tables string
}

func newJournalSetup(t *testing.T, d store.Dialect, origin string) *journalSetup {
	t.Helper()
	j := &journalSetup{t: t, dir: t.TempDir(), origin: origin, listen: freeAddr(t)}
	j.driver, j.dsn = storetest.DSN(t, d)
	j.stateFile = filepath.Join(j.dir, "witness-state")
	j.setKey(origin)
	return j
}

// setKey makes a new signing key for origin and uses it.
func (j *journalSetup) setKey(origin string) {
	key, err := audit.GenerateKey(origin)
	if err != nil {
		j.t.Fatal(err)
	}
	j.origin = origin
	j.keyFile = filepath.Join(j.dir, strings.ReplaceAll(origin, "/", "_")+".key")
	os.WriteFile(j.keyFile, []byte(key+"\n"), 0o600)
	j.vkey, _ = audit.VerifierKey(key)
}

// withWitnesses starts n real litewitness witnesses knowing this log.
func (j *journalSetup) withWitnesses(n, quorum int) {
	for i := range n {
		j.witnesses = append(j.witnesses, litewitnesstest.Start(j.t, fmt.Sprintf("witness-%d.test.invalid", i+1), map[string]string{j.origin: j.vkey}))
	}
	j.quorum = quorum
}

// config writes the configuration file and returns its path.
func (j *journalSetup) config() string {
	j.t.Helper()
	secret := "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
	var ws strings.Builder
	for _, w := range j.witnesses {
		fmt.Fprintf(&ws, "[[audit.witness]]\nurl = %q\nkey = %q\n", w.URL, w.VKey)
	}
	cfg := fmt.Sprintf(`
[server]
public_url = "http://%s"
listen = %q
%s
[database]
driver = %q
dsn = %q
[session]
secret = %q
[aidants_provider]
issuer = "https://proconnect.test.invalid"
client_id = "a"
client_secret = "s"
[franceconnect]
issuer = "https://franceconnect.test.invalid"
client_id = "f"
client_secret = "s"
[audit]
origin = %q
signing_key_file = %q
witness_state_file = %q
witness_quorum = %d
witness_interval = "150ms"
%s
[keys]
encryption_secret = %q
[provider]
pairwise_secret = %q
[log]
level = "info"
%s
`, j.listen, j.listen, j.server, j.driver, j.dsn, secret, j.origin, j.keyFile, j.stateFile, j.quorum, ws.String(), secret, secret, j.tables)
	path := filepath.Join(j.dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		j.t.Fatal(err)
	}
	return path
}

func (j *journalSetup) cli() cli { return cli{t: j.t, base: []string{"--config", j.config()}} }

func (j *journalSetup) serve() *testServer {
	j.t.Helper()
	return startServe(j.t, "", []string{"serve", "--config", j.config()})
}

// addOrganisations writes n events through the command line.
func (j *journalSetup) addOrganisations(from, n int) {
	j.t.Helper()
	c := j.cli()
	for i := from; i < from+n; i++ {
		c.ok("org", "add", "--name", fmt.Sprintf("Structure %d", i), "--siret", luhnSIRET(i))
	}
}

// luhnSIRET is the i-th valid test SIRET.
func luhnSIRET(i int) string {
	for n := int64(21000000000000) + int64(i)*10; ; n++ {
		s := fmt.Sprint(n)
		sum := 0
		for k := range s {
			d := int(s[len(s)-1-k] - '0')
			if k%2 == 1 {
				if d *= 2; d > 9 {
					d -= 9
				}
			}
			sum += d
		}
		if sum%10 == 0 {
			return s
		}
	}
}

// waitWitnessed waits until /audit/checkpoint serves the newest signed
// checkpoint with every witness's cosignature, and returns it.
func waitWitnessed(t *testing.T, s *testServer, j *journalSetup, want int) []byte {
	t.Helper()
	logV, _ := note.NewVerifier(j.vkey)
	var vs []*witness.Verifier
	for _, w := range j.witnesses {
		v, err := witness.ParseVerifierKey(w.VKey)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	deadline := time.Now().Add(20 * time.Second)
	var last []byte
	for time.Now().Before(deadline) {
		latestSize, _, _ := thirdPartyCheckpoint(t, s.URL)
		status, body := fetch(t, s.URL+"/audit/checkpoint")
		last = body
		if status == http.StatusOK {
			n, by, err := witness.Cosigned(body, logV, vs)
			if err != nil {
				t.Fatalf("served checkpoint: %v\n%s", err, body)
			}
			if len(by) >= want && strings.Contains(n.Text, fmt.Sprintf("\n%d\n", latestSize)) {
				return body
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no checkpoint witnessed by %d witnesses in time; last served:\n%s", want, last)
	return nil
}

// TestTwoLitewitnessesCosignAndReceiptsCarryThem runs the instance with
// two real litewitness witnesses: /audit/checkpoint carries both
// cosignatures, each witness holds the log's size, a person's receipt
// carries the cosigned checkpoint and verify-receipt checks the
// cosignatures against the witnesses it is given — never against the
// receipt's own — and the outside monitor passes.
func TestTwoLitewitnessesCosignAndReceiptsCarryThem(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			j := newJournalSetup(t, d, "witnessed.aidants.invalid/audit")
			j.withWitnesses(2, 2)
			j.addOrganisations(0, 3)
			s := j.serve()
			served := waitWitnessed(t, s, j, 2)
			for _, w := range j.witnesses {
				if !strings.Contains(string(served), "— "+w.Name+" ") {
					t.Fatalf("/audit/checkpoint lacks %s's cosignature:\n%s", w.Name, served)
				}
			}
			size, _, _ := thirdPartyCheckpoint(t, s.URL)
			for _, w := range j.witnesses {
				if got := w.TreeSize(t, j.origin); got != size {
					t.Fatalf("%s holds %d events, the log %d", w.Name, got, size)
				}
			}
			if b, _ := os.ReadFile(j.stateFile); string(b) != string(served) {
				t.Fatalf("the state file does not hold the witnessed checkpoint:\n%s", b)
			}
			// The public page names the witnesses and says how old.
			_, page := fetch(t, s.URL+"/journal-public")
			if !strings.Contains(string(page), "contresignées par 2 témoins sur 2") || !strings.Contains(string(page), "witness-2.test.invalid") {
				t.Fatalf("public page:\n%s", page)
			}
			// CLI: the witnessed checkpoint, and the newest signed one.
			c := j.cli()
			if out := c.ok("audit", "checkpoint"); !strings.Contains(out, "— witness-1.test.invalid ") {
				t.Fatalf("audit checkpoint: %s", out)
			}
			if out := c.ok("audit", "checkpoint", "--latest"); strings.Contains(out, "witness-1") {
				t.Fatalf("audit checkpoint --latest: %s", out)
			}

			// A receipt of an event, as the person's space gives it.
			in, err := open(context.Background(), mustLoad(t, j.config()), newLogger(mustLoad(t, j.config()), io.Discard))
			if err != nil {
				t.Fatal(err)
			}
			r, err := in.log.ReceiptFor(context.Background(), 1, "")
			in.Close()
			if err != nil || !r.Witnessed || strings.Count(r.Checkpoint, "— witness-") != 2 {
				t.Fatalf("receipt: %v %+v", err, r)
			}
			raw, _ := json.Marshal(r)
			file := filepath.Join(t.TempDir(), "recu.json")
			os.WriteFile(file, raw, 0o600)
			if out := c.ok("audit", "verify-receipt", file); !strings.Contains(out, "valid:") || !strings.Contains(out, "witness-1.test.invalid, witness-2.test.invalid (2 required)") {
				t.Fatalf("verify-receipt with the configuration's witnesses: %s", out)
			}
			w1, w2 := "--witness="+j.witnesses[0].VKey, "--witness="+j.witnesses[1].VKey
			if out, err := (cli{t: t}).run("audit", "verify-receipt", file, "--key", j.vkey, w1, w2); err != nil || !strings.HasPrefix(out, "valid:") {
				t.Fatalf("verify-receipt with --witness twice: %v %s", err, out)
			}
			// Witnesses the caller does not trust do not count, whatever the
			// receipt says.
			other := litewitnesstest.Start(t, "witness-1.test.invalid", map[string]string{j.origin: j.vkey})
			if out, err := (cli{t: t}).run("audit", "verify-receipt", file, "--key", j.vkey, "--witness="+other.VKey, w2); err == nil || !strings.Contains(out, "cosigned by 1 of the 2") {
				t.Fatalf("an impostor witness key counted: %v %s", err, out)
			}
			if _, err := (cli{t: t}).run("audit", "verify-receipt", file, "--key", j.vkey, w1, "--quorum", "2"); err == nil {
				t.Fatal("a quorum of 2 with one witness key was accepted")
			}
			// A cosignature of an unknown key does not count; a witness's
			// cosignature that does not verify makes the receipt invalid.
			var m map[string]any
			json.Unmarshal(raw, &m)
			cp := m["checkpoint"].(string)
			m["checkpoint"] = strings.Replace(cp, "— witness-2.test.invalid ", "— witness-2.test.invalid AAAA", 1)
			forged, _ := json.Marshal(m)
			os.WriteFile(file, forged, 0o600)
			if out, err := c.run("audit", "verify-receipt", file); err == nil || !strings.Contains(out, "cosigned by 1 of the 2") {
				t.Fatalf("an unknown key's cosignature: %v %s", err, out)
			}
			at := strings.Index(cp, "— witness-2.test.invalid ") + len("— witness-2.test.invalid ") + 60
			flip := map[byte]byte{'A': 'B'}[cp[at]]
			if flip == 0 {
				flip = 'A'
			}
			m["checkpoint"] = cp[:at] + string(flip) + cp[at+1:]
			forged, _ = json.Marshal(m)
			os.WriteFile(file, forged, 0o600)
			if out, err := c.run("audit", "verify-receipt", file); err == nil || !strings.Contains(out, "invalid:") {
				t.Fatalf("a forged cosignature: %v %s", err, out)
			}

			// Anyone can monitor, with the published key and the witnesses'.
			_, key := fetch(t, s.URL+"/audit/key")
			keyFile := filepath.Join(t.TempDir(), "aidants.vkey")
			os.WriteFile(keyFile, key, 0o644)
			state := filepath.Join(t.TempDir(), "monitor-state")
			mon := cli{t: t}
			out := mon.ok("audit", "monitor", "--url", s.URL, "--key", keyFile, w1, w2, "--state", state)
			if !strings.Contains(out, "OK") || !strings.Contains(out, "cosigned by witness-1.test.invalid, witness-2.test.invalid") || !strings.Contains(out, "first run") {
				t.Fatalf("monitor: %s", out)
			}
			j.addOrganisations(10, 2)
			waitWitnessed(t, s, j, 2)
			if out := mon.ok("audit", "monitor", "--url", s.URL, "--key", keyFile, w1, w2, "--state", state); !strings.Contains(out, "2 new entries") {
				t.Fatalf("monitor, second run: %s", out)
			}
			time.Sleep(1100 * time.Millisecond) // cosignature times are in seconds
			if _, err := mon.run("audit", "monitor", "--url", s.URL, "--key", keyFile, w1, w2, "--state", state, "--max-age", "1ms"); err == nil || !strings.Contains(err.Error(), "more than --max-age") {
				t.Fatalf("monitor --max-age: %v", err)
			}
			if out := c.ok("audit", "verify"); !strings.Contains(out, "reaches the witnessed checkpoint") || !strings.Contains(out, "every column matches") {
				t.Fatalf("audit verify: %s", out)
			}
		})
	}
}

func mustLoad(t *testing.T, path string) config.Config {
	t.Helper()
	e := &envFlags{config: path}
	cfg, err := e.load("")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// clone is another instance of the same journal (same origin and key):
// its own address, state file and, unless set, database.
func (j *journalSetup) clone(d store.Dialect) *journalSetup {
	c := *j
	c.dir, c.listen = j.t.TempDir(), freeAddr(j.t)
	c.stateFile = filepath.Join(c.dir, "witness-state")
	c.driver, c.dsn = storetest.DSN(j.t, d)
	return &c
}

// refusedServe runs serve, which must refuse to start, and returns its
// one-line reason.
func refusedServe(t *testing.T, j *journalSetup) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, []string{"serve", "--config", j.config()}, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("serve started on a rolled-back journal")
	}
	if msg := oneLine(err); msg != err.Error() {
		t.Fatalf("the reason is not one line: %q", err.Error())
	}
	return err.Error()
}

// TestOlderBackupRestoredIsRefused restores a backup older than what the
// witnesses cosigned: serve exits with its one-line reason, every writing
// command refuses, reads and verify still work; then the documented
// recovery, a new origin whose first event records the old one's
// witnessed checkpoint, brings the service back.
func TestOlderBackupRestoredIsRefused(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			j := newJournalSetup(t, d, "restored.aidants.invalid/audit")
			j.withWitnesses(1, 1)
			j.addOrganisations(0, 2)
			s := j.serve()
			waitWitnessed(t, s, j, 1)
			before, _, _ := thirdPartyCheckpoint(t, s.URL)
			var backup string
			if d == store.SQLite {
				backup = filepath.Join(t.TempDir(), "sauvegarde.db")
				j.cli().ok("backup", backup)
			} else {
				s.Stop()
				backup = storetest.PostgresCopy(t, j.dsn)
				s = j.serve()
			}
			j.addOrganisations(10, 3)
			waitWitnessed(t, s, j, 1)
			witnessed, _, _ := thirdPartyCheckpoint(t, s.URL)
			s.Stop()

			// The operator restores the backup.
			if d == store.SQLite {
				for _, suffix := range []string{"-wal", "-shm"} {
					os.Remove(j.dsn + suffix)
				}
				b, err := os.ReadFile(backup)
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(j.dsn, b, 0o600)
			} else {
				j.dsn = backup
			}
			why := refusedServe(t, j)
			if !strings.Contains(why, fmt.Sprintf("stops at %d events", before)) || !strings.Contains(why, fmt.Sprintf("cosigned %d", witnessed)) ||
				!strings.Contains(why, "aidants audit new-origin") {
				t.Fatalf("serve's reason: %s", why)
			}
			c := j.cli()
			if _, err := c.run("org", "add", "--name", "Après la restauration", "--siret", luhnSIRET(50)); err == nil || !strings.Contains(err.Error(), "Nothing will be written") {
				t.Fatalf("a writing command on the restored journal: %v", err)
			}
			if out := c.ok("org", "list"); !strings.Contains(out, "Structure 1") {
				t.Fatalf("reads: %s", out)
			}
			if _, err := c.run("audit", "verify"); err == nil || !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("audit verify on the restored journal: %v", err)
			}
			// Even without the state file, the witness remembers.
			os.Rename(j.stateFile, j.stateFile+".moved")
			if why := refusedServe(t, j); !strings.Contains(why, fmt.Sprintf("holds %d events", witnessed)) {
				t.Fatalf("serve without the state file: %s", why)
			}
			os.Rename(j.stateFile+".moved", j.stateFile)

			// Recovery: a new origin, registered with the witness. On
			// PostgreSQL the state file is lost too: the witness is asked.
			old := j.origin
			j.setKey("restored.aidants.invalid/audit/2")
			want := fmt.Sprintf("its witnesses had cosigned %d events (%d lost", witnessed, witnessed-before)
			if d == store.Postgres {
				os.Remove(j.stateFile)
				want = fmt.Sprintf("its witnesses hold %d events (%d lost", witnessed, witnessed-before)
			}
			out := j.cli().ok("audit", "new-origin", "--reason", "sauvegarde de la veille restaurée")
			if !strings.Contains(out, want) {
				t.Fatalf("new-origin: %s", out)
			}
			j.cli().ok("audit", "verify") // the old origin's witnessed checkpoint is recorded
			j.witnesses[0].AddLog(t, j.origin, j.vkey)
			s = j.serve()
			j.addOrganisations(20, 1)
			waitWitnessed(t, s, j, 1)
			out = j.cli().ok("audit", "verify")
			if !strings.Contains(out, "across 2 origins") || !strings.Contains(out, "reaches the witnessed checkpoint") {
				t.Fatalf("audit verify after the new origin: %s", out)
			}
			if out := j.cli().ok("org", "list"); !strings.Contains(out, "Structure 1") || !strings.Contains(out, "Structure 20") {
				t.Fatalf("both origins' data: %s", out)
			}
			// A person's receipt of the old origin verifies with the old
			// origin's key, which the command asks for by name.
			in2, err := open(context.Background(), mustLoad(t, j.config()), newLogger(mustLoad(t, j.config()), io.Discard))
			if err != nil {
				t.Fatal(err)
			}
			r, err := in2.log.ReceiptFor(context.Background(), 1, "")
			in2.Close()
			if err != nil || r.Origin != old {
				t.Fatalf("receipt of the old origin: %v %+v", err, r)
			}
			raw, _ := json.Marshal(r)
			rf := filepath.Join(t.TempDir(), "recu.json")
			os.WriteFile(rf, raw, 0o600)
			if _, err := j.cli().run("audit", "verify-receipt", rf); err == nil || !strings.Contains(err.Error(), "give \""+old+"\"'s key with --key") {
				t.Fatalf("an old origin's receipt with the configuration: %v", err)
			}
			// The old origin stays a log of its own, under its own prefix,
			// readable by any tlog client with its own key.
			oldKey := filepath.Join(t.TempDir(), "old.vkey")
			vk, _ := audit.VerifierKey(strings.TrimSpace(string(must(os.ReadFile(filepath.Join(j.dir, strings.ReplaceAll(old, "/", "_")+".key"))))))
			os.WriteFile(oldKey, []byte(vk), 0o644)
			if out, err := (cli{t: t}).run("audit", "monitor", "--url", s.URL+"/audit/origins/1/", "--key", oldKey, "--state", filepath.Join(t.TempDir(), "st")); err != nil ||
				!strings.Contains(out, fmt.Sprintf("%d events", before)) {
				t.Fatalf("monitor of the old origin: %v %s", err, out)
			}
			if out, err := (cli{t: t}).run("audit", "verify-receipt", rf, "--key", vk); err != nil || !strings.HasPrefix(out, "valid:") {
				t.Fatalf("an old origin's receipt with its key: %v %s", err, out)
			}
			in, err := open(context.Background(), mustLoad(t, j.config()), newLogger(mustLoad(t, j.config()), io.Discard))
			if err != nil {
				t.Fatal(err)
			}
			first, err := in.log.At(context.Background(), before, "")
			in.Close()
			if err != nil || first.Event.Type != audit.AuditOriginStarted || first.Event.Detail["previous_origin"] != old ||
				fmt.Sprint(first.Event.Detail["lost"]) != fmt.Sprint(witnessed-before) {
				t.Fatalf("the new origin's first event: %v %+v", err, first)
			}
		})
	}
}

// TestAnotherHistoryIsRefusedAtStartEvenWithoutTheStateFile serves, under
// the same origin and key, another history longer than what the witness
// cosigned, with the state file gone: the start-up probe sends it to the
// witness with a consistency proof, the witness refuses, and serve exits
// with its one-line reason.
func TestAnotherHistoryIsRefusedAtStartEvenWithoutTheStateFile(t *testing.T) {
	j := newJournalSetup(t, store.SQLite, "forked.aidants.invalid/audit")
	j.withWitnesses(1, 1)
	j.addOrganisations(0, 2)
	s := j.serve()
	waitWitnessed(t, s, j, 1)
	s.Stop()
	fork := j.clone(store.SQLite)
	fork.addOrganisations(100, 6) // more events than the witness holds, not the same ones
	if why := refusedServe(t, fork); !strings.Contains(why, "another history") {
		t.Fatalf("serve on another history: %s", why)
	}
}

// TestSplitViewIsRefusedByTheWitnessAndReadsGoOn runs two instances with
// the same key on two copies of one database — one history shown to some,
// another to others — with the same witness: once the first has had its
// longer history cosigned, the witness refuses every checkpoint of the
// second; the second logs and counts the refusal, and keeps serving reads
// and writes.
func TestSplitViewIsRefusedByTheWitnessAndReadsGoOn(t *testing.T) {
	a := newJournalSetup(t, store.SQLite, "split.aidants.invalid/audit")
	a.withWitnesses(1, 1)
	a.addOrganisations(0, 2)
	sa := a.serve()
	waitWitnessed(t, sa, a, 1)
	b := a.clone(store.SQLite)
	a.cli().ok("backup", b.dsn) // the same history, up to what was witnessed
	sb := b.serve()
	a.addOrganisations(10, 3)
	waitWitnessed(t, sa, a, 1)
	b.addOrganisations(200, 4) // another history from there
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(sb.Log.String(), "a witness refused the log's checkpoint") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged:\n%s", sb.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, metrics := fetch(t, sb.URL+"/metrics")
	if !strings.Contains(string(metrics), `aidants_witness_refused_total{witness="witness-1.test.invalid"}`) ||
		strings.Contains(string(metrics), `aidants_witness_refused_total{witness="witness-1.test.invalid"} 0`) {
		t.Fatalf("the refusal is not counted:\n%s", metrics)
	}
	for _, p := range []string{"/audit/checkpoint", "/audit/checkpoint/latest", "/journal-public", "/audit/tile/entries/000.p/3"} {
		if st, body := fetch(t, sb.URL+p); st != http.StatusOK {
			t.Fatalf("%s: %d %s", p, st, body)
		}
	}
	b.addOrganisations(300, 1) // writes go on
	sizeA, _, _ := thirdPartyCheckpoint(t, sa.URL)
	if n := a.witnesses[0].TreeSize(t, a.origin); n != sizeA {
		t.Fatalf("the witness holds %d events, the first instance %d", n, sizeA)
	}
}

// TestMonitorFailsOnForkShrinkResignatureAndBadTiles points the outside
// monitor, after a run on the genuine journal, at instances serving a
// shrunk copy, another history under the same key, the same origin signed
// with another key, and tiles that do not hash to the tree: each fails,
// naming the problem, and leaves the kept checkpoint alone.
func TestMonitorFailsOnForkShrinkResignatureAndBadTiles(t *testing.T) {
	j := newJournalSetup(t, store.SQLite, "monitored.aidants.invalid/audit")
	j.addOrganisations(0, 3)
	shrunk := filepath.Join(t.TempDir(), "older.db")
	j.cli().ok("backup", shrunk)
	j.addOrganisations(10, 3)
	s := j.serve()
	keyFile := filepath.Join(t.TempDir(), "aidants.vkey")
	os.WriteFile(keyFile, []byte(j.vkey+"\n"), 0o644)
	state := filepath.Join(t.TempDir(), "monitor-state")
	mon := cli{t: t}
	if out := mon.ok("audit", "monitor", "--url", s.URL, "--key", keyFile, "--state", state); !strings.Contains(out, "OK") {
		t.Fatalf("healthy: %s", out)
	}
	kept, _ := os.ReadFile(state)
	s.Stop()

	older := j.clone(store.SQLite)
	older.dsn = shrunk
	forked := j.clone(store.SQLite)
	forked.addOrganisations(100, 9)
	resigned := j.clone(store.SQLite)
	resigned.setKey(j.origin)
	resigned.addOrganisations(0, 6)
	badTiles := j.clone(store.SQLite)
	{
		b, _ := os.ReadFile(j.dsn)
		os.WriteFile(badTiles.dsn, b, 0o600)
		db, err := store.Open(context.Background(), "sqlite", badTiles.dsn, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		db.W.Exec(`DROP TRIGGER audit_events_no_update`)
		if _, err := db.W.Exec(`UPDATE audit_events SET salt = zeroblob(32) WHERE idx = 4`); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	for _, c := range []struct {
		name  string
		j     *journalSetup
		fresh bool // a first run, with no kept checkpoint
		want  string
	}{
		{"shrunk", older, false, "shrank"},
		{"forked", forked, false, "fork"},
		{"re-signed", resigned, false, "do not verify"},
		{"bad tiles", badTiles, true, "does not hash to the tree"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := c.j.serve()
			defer srv.Stop()
			st := state
			if c.fresh {
				st = filepath.Join(t.TempDir(), "fresh-state")
			}
			_, err := mon.run("audit", "monitor", "--url", srv.URL, "--key", keyFile, "--state", st)
			if err == nil || !strings.Contains(err.Error(), "FAILED") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("monitor on a %s journal: %v", c.name, err)
			}
			if now, _ := os.ReadFile(state); string(now) != string(kept) {
				t.Fatal("a failed run replaced the kept checkpoint")
			}
		})
	}
}

// TestOneOfTwoServersOnPostgresSubmits runs two instances on one
// PostgreSQL database with the same witness: one at a time (an advisory
// lock) sends checkpoints, and both keep the witnessed one in their own
// state file.
func TestOneOfTwoServersOnPostgresSubmits(t *testing.T) {
	a := newJournalSetup(t, store.Postgres, "shared.aidants.invalid/audit")
	a.withWitnesses(1, 1)
	b := a.clone(store.Postgres)
	b.dsn = a.dsn
	a.addOrganisations(0, 2)
	sa, sb := a.serve(), b.serve()
	b.addOrganisations(10, 2)
	served := waitWitnessed(t, sa, a, 1)
	waitWitnessed(t, sb, b, 1)
	cosigned := func(s *testServer) int {
		_, m := fetch(t, s.URL+"/metrics")
		for _, l := range strings.Split(string(m), "\n") {
			if v, ok := strings.CutPrefix(l, `aidants_witness_cosigned_total{witness="witness-1.test.invalid"} `); ok {
				var n int
				fmt.Sscan(v, &n)
				return n
			}
		}
		t.Fatalf("no cosignature counter:\n%s", m)
		return 0
	}
	if na, nb := cosigned(sa), cosigned(sb); (na == 0) == (nb == 0) {
		t.Fatalf("cosignatures asked by the two servers: %d and %d, want one of them only", na, nb)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ka, _ := os.ReadFile(a.stateFile)
		kb, _ := os.ReadFile(b.stateFile)
		if string(ka) == string(served) && string(kb) == string(served) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state files:\n%s\n%s\nwant:\n%s", ka, kb, served)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
