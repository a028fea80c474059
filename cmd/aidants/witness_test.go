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
`, j.listen, j.listen, j.driver, j.dsn, secret, j.origin, j.keyFile, j.stateFile, j.quorum, ws.String(), secret, secret)
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
