package witness

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/witness/litewitnesstest"
)

// testWitness is a running witness the tests talk to over HTTP: a real
// litewitness, or our development Server.
type testWitness struct {
	name    string
	url     func() string
	vkey    string
	restart func(t *testing.T)

	// Only for the development Server.
	statePath string
	server    func() *Server
}

// eachWitness runs f against a real litewitness and against the development
// Server, both knowing logs (origin → log vkey), so that the same cases
// prove the client and the development witness agree with litewitness.
func eachWitness(t *testing.T, logs map[string]string, f func(t *testing.T, w *testWitness)) {
	t.Run("litewitness", func(t *testing.T) {
		lw := litewitnesstest.Start(t, "example.test/litewitness", logs)
		f(t, &testWitness{
			name:    lw.Name,
			url:     func() string { return lw.URL },
			vkey:    lw.VKey,
			restart: func(t *testing.T) { lw.Restart(t) },
		})
	})
	t.Run("devserver", func(t *testing.T) {
		f(t, startDevServer(t, DevWitnessName, logs))
	})
}

// startDevServer serves a development witness over HTTP on loopback. Its
// restart builds a new Server from the same key and state file, as a new
// process would.
func startDevServer(t *testing.T, name string, logs map[string]string) *testWitness {
	t.Helper()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "witness.key")
	key, err := LoadOrCreateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	opts := ServerOptions{Name: name, Key: key, Logs: logs, StatePath: filepath.Join(dir, "state.json")}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[Server]
	current.Store(srv)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return &testWitness{
		name:      name,
		url:       func() string { return hs.URL },
		vkey:      srv.VerifierKey(),
		statePath: opts.StatePath,
		server:    current.Load,
		restart: func(t *testing.T) {
			key, err := LoadOrCreateKey(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			opts.Key = key
			next, err := NewServer(opts)
			if err != nil {
				t.Fatal(err)
			}
			if next.VerifierKey() != srv.VerifierKey() {
				t.Fatalf("verifier key changed across restart")
			}
			current.Store(next)
		},
	}
}

// add submits a checkpoint with a bounded context.
func (w *testWitness) add(t *testing.T, old int64, proof tlog.TreeProof, signed []byte) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return AddCheckpoint(ctx, nil, w.url(), old, proof, signed)
}

// mustCosign submits the log's checkpoint of size to, with a proof from
// old, and checks that the answer is a cosignature by this witness that our
// Verifier (parsed from the key the witness published) accepts.
func (w *testWitness) mustCosign(t *testing.T, l *testLog, old, to int64) {
	t.Helper()
	before := time.Now()
	signed := l.checkpoint(t, to)
	lines, err := w.add(t, old, l.proof(t, old, to), signed)
	if err != nil {
		t.Fatalf("add checkpoint %d from %d: %v", to, old, err)
	}
	w.checkCosigned(t, l, signed, lines, before)
}

func (w *testWitness) checkCosigned(t *testing.T, l *testLog, signed, lines []byte, before time.Time) {
	t.Helper()
	v, err := ParseVerifierKey(w.vkey)
	if err != nil {
		t.Fatalf("parse the witness's verifier key: %v", err)
	}
	n, by, err := Cosigned(append(signed, lines...), l.verifier, []*Verifier{v})
	if err != nil {
		t.Fatalf("open cosigned checkpoint: %v\n%s%s", err, signed, lines)
	}
	if n.Text != l.checkpointText(t, mustParseSize(t, n.Text)) {
		t.Fatalf("cosigned text %q is not the log's checkpoint", n.Text)
	}
	if len(by) != 1 || by[0].Name != w.name || by[0].KeyHash != v.KeyHash() {
		t.Fatalf("cosignatures = %+v, want one by %s", by, w.name)
	}
	if lo, hi := before.Truncate(time.Second), time.Now().Add(time.Second); by[0].Time.Before(lo) || by[0].Time.After(hi) {
		t.Fatalf("cosignature time %v, want within [%v, %v]", by[0].Time, lo, hi)
	}
}

func mustParseSize(t *testing.T, text string) int64 {
	t.Helper()
	c, err := torchwood.ParseCheckpoint(text)
	if err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	return c.N
}

// wantRefusal returns a check that err is a refusal of the given kind.
func wantRefusal(kind error) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !IsRefusal(err) || !errors.Is(err, kind) {
			t.Fatalf("err = %v, want a refusal: %v", err, kind)
		}
		if IsTransient(err) {
			t.Fatalf("err = %v is a refusal and transient", err)
		}
	}
}

// wantConflict returns a check that err is a conflict giving size.
func wantConflict(size int64) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ce *ConflictError
		if !errors.As(err, &ce) || ce.Size != size {
			t.Fatalf("err = %v, want a conflict at size %d", err, size)
		}
		if IsRefusal(err) || IsTransient(err) {
			t.Fatalf("conflict %v is classified as a refusal or transient", err)
		}
	}
}

// TestAddCheckpointCases runs the protocol's cases against litewitness and
// the development witness: each case has its own log, first gets the
// checkpoints of sizes prepare cosigned, then submits one checkpoint and
// checks the witness's answer. Afterwards the witness must still hold the
// checkpoint it held (a refusal changes nothing) and cosign the log's next
// checkpoint from it.
func TestAddCheckpointCases(t *testing.T) {
	type submission struct {
		fork      bool  // sign a checkpoint of a tree with other leaves
		badKey    bool  // sign with a key of the same name the witness does not know
		size, old int64 // the checkpoint's size and the old size sent
		proofFrom int64 // the proof is from this size (0: empty proof)
	}
	cases := []struct {
		name       string
		unknownLog bool
		prepare    []int64
		submit     submission
		wantErr    func(t *testing.T, err error) // nil: must be cosigned
	}{
		{name: "first checkpoint is cosigned", submit: submission{size: 5}},
		{name: "extension is cosigned", prepare: []int64{5}, submit: submission{size: 12, old: 5, proofFrom: 5}},
		{name: "checkpoint held is cosigned again", prepare: []int64{5}, submit: submission{size: 5, old: 5}},
		{name: "first checkpoint of an empty log is cosigned", submit: submission{size: 0}},
		{
			name: "fork is refused", prepare: []int64{5},
			submit:  submission{fork: true, size: 8, old: 5, proofFrom: 5},
			wantErr: wantRefusal(ErrInconsistent),
		},
		{
			name: "other root at the size held is refused", prepare: []int64{5},
			submit:  submission{fork: true, size: 5, old: 5},
			wantErr: wantRefusal(ErrInconsistent),
		},
		{
			name: "proof from the wrong size is refused", prepare: []int64{5},
			submit:  submission{size: 12, old: 5, proofFrom: 6},
			wantErr: wantRefusal(ErrInconsistent),
		},
		{
			name: "stale old size is a conflict", prepare: []int64{5, 9},
			submit:  submission{size: 12, old: 5, proofFrom: 5},
			wantErr: wantConflict(9),
		},
		{
			name: "old size 0 after a first checkpoint is a conflict", prepare: []int64{5},
			submit:  submission{size: 12},
			wantErr: wantConflict(5),
		},
		{
			name: "old size above the checkpoint size is refused", prepare: []int64{5},
			submit:  submission{size: 5, old: 9},
			wantErr: wantRefusal(ErrBadRequest),
		},
		{
			name: "unknown origin is refused", unknownLog: true,
			submit:  submission{size: 5},
			wantErr: wantRefusal(ErrUnknownLog),
		},
		{
			name:    "signature by another key is refused",
			submit:  submission{badKey: true, size: 5},
			wantErr: wantRefusal(ErrBadSignature),
		},
	}

	logs := make([]*testLog, len(cases))
	known := map[string]string{}
	for i, c := range cases {
		logs[i] = newTestLog(t, fmt.Sprintf("example.test/log%d", i)).grow(t, 16, "entry")
		if !c.unknownLog {
			known[logs[i].origin] = logs[i].vkey
		}
	}
	_, otherVKey, _ := note.GenerateKey(rand.Reader, "example.test/unused")
	known["example.test/unused"] = otherVKey

	eachWitness(t, known, func(t *testing.T, w *testWitness) {
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				l := logs[i]
				held := int64(0)
				for _, size := range c.prepare {
					w.mustCosign(t, l, held, size)
					held = size
				}

				s := c.submit
				tree, signer := l, l.signer
				if s.fork {
					tree = l.fork().grow(t, 16, "rewritten")
				}
				if s.badKey {
					other := newTestLog(t, l.origin)
					signer = other.signer
				}
				signed := tree.checkpointSignedBy(t, s.size, signer)
				before := time.Now()
				lines, err := w.add(t, s.old, tree.proof(t, s.proofFrom, s.size), signed)
				if c.wantErr == nil {
					if err != nil {
						t.Fatalf("add checkpoint: %v", err)
					}
					w.checkCosigned(t, l, signed, lines, before)
					held = s.size
				} else {
					if err == nil {
						t.Fatalf("add checkpoint cosigned: %s", lines)
					}
					c.wantErr(t, err)
				}

				if c.unknownLog {
					return
				}
				// The witness holds what it held: it extends from there only.
				w.mustCosign(t, l, held, 16)
			})
		}
	})
}

// TestWitnessKeepsStateAcrossRestart proves that a restarted witness
// remembers the checkpoint it cosigned: it still refuses a fork of it and a
// stale old size, and extends it.
func TestWitnessKeepsStateAcrossRestart(t *testing.T) {
	l := newTestLog(t, "example.test/restart").grow(t, 12, "entry")
	fork := l.fork().grow(t, 12, "rewritten")
	eachWitness(t, map[string]string{l.origin: l.vkey}, func(t *testing.T, w *testWitness) {
		w.mustCosign(t, l, 0, 5)
		w.restart(t)

		_, err := w.add(t, 0, nil, l.checkpoint(t, 9))
		wantConflict(5)(t, err)
		_, err = w.add(t, 5, fork.proof(t, 5, 9), fork.checkpoint(t, 9))
		wantRefusal(ErrInconsistent)(t, err)
		w.mustCosign(t, l, 5, 9)

		w.restart(t)
		w.mustCosign(t, l, 9, 12)
	})
}

// TestTamperedCosignatureDoesNotVerify takes a real cosignature from each
// witness and checks that our Verifier accepts it as is and refuses it once
// the checkpoint, the time or the signature changes, and that Cosigned does
// not count a line whose key hash is not the witness's.
func TestTamperedCosignatureDoesNotVerify(t *testing.T) {
	l := newTestLog(t, "example.test/tamper").grow(t, 6, "entry")
	eachWitness(t, map[string]string{l.origin: l.vkey}, func(t *testing.T, w *testWitness) {
		signed := l.checkpoint(t, 5)
		lines, err := w.add(t, 0, nil, signed)
		if err != nil {
			t.Fatal(err)
		}
		v, err := ParseVerifierKey(w.vkey)
		if err != nil {
			t.Fatal(err)
		}
		n, err := note.Open(append(signed, lines...), note.VerifierList(l.verifier, v))
		if err != nil {
			t.Fatal(err)
		}
		var sig []byte
		for _, s := range n.Sigs {
			if s.Name == v.Name() {
				sig = decodeSig(t, s.Base64)[4:]
			}
		}
		if sig == nil {
			t.Fatalf("no cosignature by %s in %q", v.Name(), lines)
		}
		text := []byte(n.Text)
		if !v.Verify(text, sig) {
			t.Fatal("Verify refuses the witness's own cosignature")
		}

		laterTime := append([]byte(nil), sig...)
		laterTime[7]++
		flipped := append([]byte(nil), sig...)
		flipped[len(flipped)-1] ^= 1
		tampered := []struct {
			name      string
			text, sig []byte
		}{
			{"other size", []byte(l.checkpointText(t, 6)), sig},
			{"other root", []byte(l.fork().grow(t, 5, "x").checkpointText(t, 5)), sig},
			{"extension line added", append(append([]byte(nil), text...), "extra\n"...), sig},
			{"not a checkpoint", []byte("hello\n"), sig},
			{"other time", text, laterTime},
			{"flipped signature bit", text, flipped},
			{"truncated", text, sig[:len(sig)-1]},
		}
		for _, tc := range tampered {
			if v.Verify(tc.text, tc.sig) {
				t.Errorf("%s: Verify accepts it", tc.name)
			}
		}

		// A line claiming another key hash is not the witness's: ignored.
		other := *v
		other.hash ^= 1
		wrongHash := signatureLine(v.Name(), other.hash, sig)
		_, by, err := Cosigned(append(signed, wrongHash...), l.verifier, []*Verifier{v})
		if err != nil || len(by) != 0 {
			t.Errorf("line with another key hash: by = %v, err = %v; want ignored", by, err)
		}
		// A line with the witness's key hash but a bad signature: error.
		bad := signatureLine(v.Name(), v.KeyHash(), flipped)
		_, _, err = Cosigned(append(signed, bad...), l.verifier, []*Verifier{v})
		var invalid *note.InvalidSignatureError
		if !errors.As(err, &invalid) {
			t.Errorf("bad cosignature: err = %v, want a note.InvalidSignatureError", err)
		}
		// A verifier with the same key under another name does not match.
		renamed, err := NewVerifier("example.test/impostor", v.key)
		if err != nil {
			t.Fatal(err)
		}
		if _, by, err := Cosigned(append(signed, lines...), l.verifier, []*Verifier{renamed}); err != nil || len(by) != 0 {
			t.Errorf("verifier under another name: by = %v, err = %v; want none", by, err)
		}
	})
}
