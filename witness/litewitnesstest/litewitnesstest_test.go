package litewitnesstest_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/witness"
	"aidants/witness/litewitnesstest"
)

// TestHarnessRunsARealLitewitness checks what the harness promises: a log
// added while litewitness runs is served, the database records the
// checkpoint cosigned, and a restart keeps the key and the state.
func TestHarnessRunsARealLitewitness(t *testing.T) {
	w := litewitnesstest.Start(t, "example.test/harness", nil)
	if _, err := witness.ParseVerifierKey(w.VKey); err != nil {
		t.Fatalf("VKey %q: %v", w.VKey, err)
	}

	const origin = "example.test/harness-log"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	w.AddLog(t, origin, vkey)

	// A one-leaf tree: its root is the leaf hash.
	c := torchwood.Checkpoint{Origin: origin, Tree: tlog.Tree{N: 1, Hash: tlog.RecordHash([]byte("leaf"))}}
	signed, err := note.Sign(&note.Note{Text: c.String()}, signer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := witness.AddCheckpoint(ctx, nil, w.URL, 0, nil, signed); err != nil {
		t.Fatalf("add checkpoint: %v", err)
	}
	if got := w.TreeSize(t, origin); got != 1 {
		t.Fatalf("TreeSize = %d, want 1", got)
	}

	vk := w.VKey
	w.Restart(t)
	if w.VKey != vk {
		t.Fatalf("VKey changed across restart: %s, then %s", vk, w.VKey)
	}
	_, err = witness.AddCheckpoint(ctx, nil, w.URL, 0, nil, signed)
	var conflict *witness.ConflictError
	if !errors.As(err, &conflict) || conflict.Size != 1 {
		t.Fatalf("after restart: err = %v, want a conflict at size 1", err)
	}
}
