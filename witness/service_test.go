package witness_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
	"aidants/witness"
)

const origin = "service.test.invalid/audit"

// testLog is a real journal on SQLite.
func testLog(t *testing.T) (*audit.Log, string) {
	t.Helper()
	skey, _ := audit.GenerateKey(origin)
	l, err := audit.Open(context.Background(), storetest.Open(t, store.SQLite), audit.Options{SigningKey: skey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, skey
}

func write(t *testing.T, l *audit.Log, n int) {
	t.Helper()
	for i := range n {
		err := l.Write(context.Background(), func(tx *audit.Tx) error {
			_, err := tx.Append(audit.Event{Type: audit.AidantLogin, Actor: audit.Actor{Kind: audit.ActorAidant, ID: fmt.Sprint("aid_", i)}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// devWitness serves a development witness knowing the log.
func devWitness(t *testing.T, name string, l *audit.Log) witness.Endpoint {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	srv, err := witness.NewServer(witness.ServerOptions{Name: name, Key: priv, Logs: map[string]string{l.Origin(): l.VerifierKey()},
		StatePath: filepath.Join(t.TempDir(), "state.json")})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv)
	t.Cleanup(h.Close)
	v, err := witness.ParseVerifierKey(srv.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	return witness.Endpoint{URL: h.URL, Verifier: v}
}

// liar answers every checkpoint with a line under another witness's name
// that does not verify.
func liar(t *testing.T, name string) witness.Endpoint {
	t.Helper()
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "— %s AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n", name)
	}))
	t.Cleanup(h.Close)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	v, _ := witness.NewVerifier("liar.test.invalid", priv.Public().(ed25519.PublicKey))
	return witness.Endpoint{URL: h.URL, Verifier: v}
}

func service(t *testing.T, l *audit.Log, quorum int, state string, ws ...witness.Endpoint) *witness.Service {
	t.Helper()
	s, err := witness.New(l, witness.Config{Witnesses: ws, Quorum: quorum, StateFile: state,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOneLyingWitnessDoesNotBlockTheQuorum has three witnesses, one of
// which answers a cosignature line claiming another witness's name that
// does not verify: the two honest ones make the quorum of two, and the
// liar is counted as a refusal.
func TestOneLyingWitnessDoesNotBlockTheQuorum(t *testing.T) {
	ctx := context.Background()
	l, _ := testLog(t)
	w1, w2 := devWitness(t, "w1.test.invalid", l), devWitness(t, "w2.test.invalid", l)
	bad := liar(t, "w1.test.invalid")
	s := service(t, l, 2, filepath.Join(t.TempDir(), "state"), w1, bad, w2)
	write(t, l, 5)
	if err := s.Round(ctx); err != nil {
		t.Fatal(err)
	}
	served, err := s.Served(ctx)
	if err != nil || served.Size != 5 || len(served.Witnesses) != 2 {
		t.Fatalf("served: %v %+v", err, served)
	}
	if st := s.Stats(); st.Refused[1].Load() != 1 || st.Cosigned[0].Load() != 1 || st.Cosigned[2].Load() != 1 {
		t.Fatalf("refusals %d, cosignatures %d and %d", st.Refused[1].Load(), st.Cosigned[0].Load(), st.Cosigned[2].Load())
	}
}

// TestARaisedQuorumIsMetWithoutNewWrites witnesses a checkpoint with one
// witness, then raises the quorum to two: with no new event, the next
// round sends the same checkpoint again and /audit/checkpoint serves it
// with both cosignatures.
func TestARaisedQuorumIsMetWithoutNewWrites(t *testing.T) {
	ctx := context.Background()
	l, _ := testLog(t)
	w1, w2 := devWitness(t, "w1.test.invalid", l), devWitness(t, "w2.test.invalid", l)
	state := filepath.Join(t.TempDir(), "state")
	write(t, l, 3)
	if err := service(t, l, 1, state, w1).Round(ctx); err != nil {
		t.Fatal(err)
	}
	s := service(t, l, 2, state, w1, w2)
	if _, err := s.Served(ctx); !errors.Is(err, witness.ErrNotYetWitnessed) {
		t.Fatalf("before the round: %v", err)
	}
	if err := s.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if served, err := s.Served(ctx); err != nil || len(served.Witnesses) != 2 || served.Size != 3 {
		t.Fatalf("after the round: %v %+v", err, served)
	}
}

// TestProbeFindsARollbackAndAnotherHistory asks, at start, the witnesses
// of a journal: one that holds more events than the database, or that
// holds events the database does not extend, is a rollback.
func TestProbeFindsARollbackAndAnotherHistory(t *testing.T) {
	ctx := context.Background()
	live, skey := testLog(t)
	w := devWitness(t, "w1.test.invalid", live)
	write(t, live, 8)
	if err := service(t, live, 1, filepath.Join(t.TempDir(), "state"), w).Round(ctx); err != nil {
		t.Fatal(err)
	}
	open := func(n int, from int) *audit.Log {
		l, err := audit.Open(ctx, storetest.Open(t, store.SQLite), audit.Options{SigningKey: skey})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		for i := range n {
			l.Write(ctx, func(tx *audit.Tx) error {
				_, err := tx.Append(audit.Event{Type: audit.AidantLogin, Actor: audit.Actor{Kind: audit.ActorAidant, ID: fmt.Sprint("aid_", from+i)}})
				return err
			})
		}
		return l
	}
	var re *audit.RollbackError
	// No state file at all: the witness still knows.
	if err := service(t, open(5, 0), 1, "", w).Probe(ctx); !errors.As(err, &re) || !strings.Contains(re.Msg, "holds 8 events") {
		t.Fatalf("a database behind the witness: %v", err)
	}
	if err := service(t, open(12, 100), 1, "", w).Probe(ctx); !errors.As(err, &re) || !strings.Contains(re.Msg, "another history") {
		t.Fatalf("another history: %v", err)
	}
	// The database the witness cosigned: accepted.
	if err := service(t, open(0, 0), 1, "", w).Probe(ctx); !errors.As(err, &re) || !strings.Contains(re.Msg, "holds 8 events") {
		t.Fatalf("an empty database: %v", err)
	}
	if err := service(t, live, 1, "", w).Probe(ctx); err != nil {
		t.Fatalf("the live database: %v", err)
	}
}
