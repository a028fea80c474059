package audit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

// TestWitnessedCheckpointsAreVerified stores a checkpoint cosigned by a
// witness, then forges its cosignature or removes it: verify, given the
// witness's key and a quorum, names the index; a witnessed checkpoint the
// events do not give is refused when stored.
func TestWitnessedCheckpointsAreVerified(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _ := openLog(t, db)
		writeEvents(t, l, 0, 10)
		cp, _ := l.Latest(ctx)
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		signer, err := torchwood.NewCosignatureSigner("witness.test.invalid", priv)
		if err != nil {
			t.Fatal(err)
		}
		text, _, _ := strings.Cut(string(cp.Note), "\n\n")
		cosigned, err := note.Sign(&note.Note{Text: text + "\n"}, signer)
		if err != nil {
			t.Fatal(err)
		}
		_, lines, _ := strings.Cut(string(cosigned), "\n\n")
		full := string(cp.Note) + lines
		if err := l.StoreWitnessed(ctx, []byte(full)); err != nil {
			t.Fatal(err)
		}
		ws := []note.Verifier{signer.Verifier()}
		if res, err := audit.VerifyWith(ctx, db, l.VerifierKey(), audit.VerifyOptions{Witnesses: ws, Quorum: 1}); err != nil || res.Witnessed != 1 {
			t.Fatalf("verify: %v %+v", err, res)
		}
		if _, err := audit.VerifyWith(ctx, db, l.VerifierKey(), audit.VerifyOptions{Witnesses: ws, Quorum: 2}); err == nil || !strings.Contains(err.Error(), "1 of the 2 cosignatures") {
			t.Fatalf("verify with a quorum of two: %v", err)
		}
		l.Close()
		dropAllTriggers(t, db)
		forged := []byte(full)
		forged[len(forged)-10] ^= 1
		if _, err := db.W.Exec(db.Rebind(`UPDATE audit_witnessed SET note = ?`), forged); err != nil {
			t.Fatal(err)
		}
		_, err = audit.VerifyWith(ctx, db, l.VerifierKey(), audit.VerifyOptions{Witnesses: ws, Quorum: 1})
		var te *audit.TamperError
		if !errors.As(err, &te) || te.Index != 9 || !strings.Contains(te.Msg, "witnessed") {
			t.Fatalf("a forged cosignature: %v", err)
		}
		// Without the witness's key, the log's own signature is still checked.
		bad := []byte(strings.Replace(full, "— "+origin+" ", "— "+origin+" AAAA", 1))
		db.W.Exec(db.Rebind(`UPDATE audit_witnessed SET note = ?`), bad)
		if _, err := audit.Verify(ctx, db, l.VerifierKey(), nil); err == nil {
			t.Fatal("a witnessed checkpoint without the log's signature verified")
		}
	})
}
