package witness

import (
	"crypto/rand"
	"fmt"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testLog is a real RFC 6962 tree kept in memory, with a note key that signs
// its checkpoints: the log side of the protocol, built from the same
// golang.org/x/mod/sumdb/tlog code the audit journal uses.
type testLog struct {
	origin   string
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	hashes   []tlog.Hash // stored hashes, as tlog.StoredHashes lays them out
	n        int64       // number of leaves
}

func newTestLog(t testing.TB, origin string) *testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{origin: origin, signer: signer, verifier: verifier, vkey: vkey}
}

// fork returns an empty tree of the same log (same origin, same key): what
// a log that rewrites its history would sign.
func (l *testLog) fork() *testLog {
	return &testLog{origin: l.origin, signer: l.signer, verifier: l.verifier, vkey: l.vkey}
}

func (l *testLog) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(l.hashes)) {
				return nil, fmt.Errorf("hash %d not stored", x)
			}
			out[i] = l.hashes[x]
		}
		return out, nil
	})
}

// grow appends leaves named after prefix until the tree has size leaves.
func (l *testLog) grow(t testing.TB, size int64, prefix string) *testLog {
	t.Helper()
	for l.n < size {
		hs, err := tlog.StoredHashes(l.n, fmt.Appendf(nil, "%s %d", prefix, l.n), l.reader())
		if err != nil {
			t.Fatal(err)
		}
		l.hashes = append(l.hashes, hs...)
		l.n++
	}
	return l
}

func (l *testLog) root(t testing.TB, size int64) tlog.Hash {
	t.Helper()
	h, err := tlog.TreeHash(size, l.reader())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkpointText is the checkpoint of the first size leaves.
func (l *testLog) checkpointText(t testing.TB, size int64) string {
	t.Helper()
	return torchwood.Checkpoint{Origin: l.origin, Tree: tlog.Tree{N: size, Hash: l.root(t, size)}}.String()
}

// checkpoint is the checkpoint of the first size leaves, signed by signer.
func (l *testLog) checkpointSignedBy(t testing.TB, size int64, signer note.Signer) []byte {
	t.Helper()
	signed, err := note.Sign(&note.Note{Text: l.checkpointText(t, size)}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func (l *testLog) checkpoint(t testing.TB, size int64) []byte {
	t.Helper()
	return l.checkpointSignedBy(t, size, l.signer)
}

// proof is the consistency proof from size from to size to (empty from 0).
func (l *testLog) proof(t testing.TB, from, to int64) tlog.TreeProof {
	t.Helper()
	if from == 0 {
		return nil
	}
	p, err := tlog.ProveTree(to, from, l.reader())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
