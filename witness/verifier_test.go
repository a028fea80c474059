package witness

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
)

func decodeSig(t *testing.T, b64 string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signatureLine formats a note signature line.
func signatureLine(name string, hash uint32, sig []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, hash)
	return fmt.Appendf(nil, "— %s %s\n", name, base64.StdEncoding.EncodeToString(append(b, sig...)))
}

// newTorchwoodSigner returns torchwood's cosignature/v1 signer, the one
// litewitness and our development Server sign with.
func newTorchwoodSigner(t *testing.T, name string) *torchwood.CosignatureSigner {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := torchwood.NewCosignatureSigner(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestParseVerifierKeyReadsTorchwoodKeys checks that the key string
// torchwood's signer publishes parses back to the same name, hash and key,
// and that our Verifier accepts torchwood's cosignatures.
func TestParseVerifierKeyReadsTorchwoodKeys(t *testing.T) {
	s := newTorchwoodSigner(t, "witness.example/w1")
	vkey := s.Verifier().String()
	v, err := ParseVerifierKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name() != s.Name() || v.KeyHash() != s.KeyHash() || v.String() != vkey {
		t.Fatalf("parsed %s %08x %s, want %s %08x %s", v.Name(), v.KeyHash(), v, s.Name(), s.KeyHash(), vkey)
	}

	l := newTestLog(t, "example.test/log").grow(t, 3, "entry")
	text := l.checkpointText(t, 3)
	before := time.Now()
	signed, err := note.Sign(&note.Note{Text: text}, l.signer, s)
	if err != nil {
		t.Fatal(err)
	}
	_, by, err := Cosigned(signed, l.verifier, []*Verifier{v})
	if err != nil {
		t.Fatal(err)
	}
	if len(by) != 1 || by[0].Name != "witness.example/w1" || by[0].Time.Before(before.Truncate(time.Second)) {
		t.Fatalf("cosignatures = %+v", by)
	}
}

// TestParseVerifierKeyRejectsBadKeys checks that each kind of bad key is
// refused with the error that names its problem.
func TestParseVerifierKeyRejectsBadKeys(t *testing.T) {
	good := newTorchwoodSigner(t, "witness.example/w1").Verifier().String()
	name, rest, _ := strings.Cut(good, "+")
	hash, key64, _ := strings.Cut(rest, "+")
	key := decodeSig(t, key64)
	reencode := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	flip := func(h string) string {
		if h[0] == '0' {
			return "1" + h[1:]
		}
		return "0" + h[1:]
	}
	_, logVKey, err := note.GenerateKey(rand.Reader, "example.test/log")
	if err != nil {
		t.Fatal(err)
	}
	// A key of type 0x01 with a hash computed for that type: well formed,
	// only the type is wrong.
	logKeyName, _, _ := strings.Cut(logVKey, "+")

	cases := []struct {
		name, vkey string
		want       error
	}{
		{"empty", "", ErrMalformedKey},
		{"name only", name, ErrMalformedKey},
		{"no key", name + "+" + hash, ErrMalformedKey},
		{"empty key", name + "+" + hash + "+", ErrMalformedKey},
		{"empty name", "+" + hash + "+" + key64, ErrMalformedKey},
		{"space in name", "witness example+" + hash + "+" + key64, ErrMalformedKey},
		{"short hash", name + "+" + hash[1:] + "+" + key64, ErrMalformedKey},
		{"hash not hex", name + "+zzzzzzzz+" + key64, ErrMalformedKey},
		{"key not base64", name + "+" + hash + "+" + key64[:len(key64)-1] + "!", ErrMalformedKey},
		{"key too short", name + "+" + hash + "+" + reencode(key[:32]), ErrMalformedKey},
		{"key too long", name + "+" + hash + "+" + reencode(append(key, 0)), ErrMalformedKey},
		{"wrong hash", name + "+" + flip(hash) + "+" + key64, ErrKeyHash},
		{"other name", "witness.example/w2+" + hash + "+" + key64, ErrKeyHash},
		{"Ed25519 note key (type 0x01)", logVKey, ErrKeyType},
		{"unknown type", name + "+" + hash + "+" + reencode(append([]byte{0x05}, key[1:]...)), ErrKeyType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := ParseVerifierKey(c.vkey)
			if !errors.Is(err, c.want) {
				t.Fatalf("ParseVerifierKey(%q) = %v, %v; want %v", c.vkey, v, err, c.want)
			}
		})
	}
	if _, err := ParseVerifierKey(logVKey); err == nil || !strings.Contains(err.Error(), "0x01") {
		t.Errorf("log key %s (%s): error %v does not name the type", logKeyName, logVKey, err)
	}
}

// TestCosignatureTime reads the time of a cosignature and refuses
// signatures of the wrong length.
func TestCosignatureTime(t *testing.T) {
	sig := binary.BigEndian.AppendUint32(nil, 0xdeadbeef)
	sig = binary.BigEndian.AppendUint64(sig, 1700000000)
	sig = append(sig, make([]byte, ed25519.SignatureSize)...)
	got, err := CosignatureTime(note.Signature{Name: "w", Base64: base64.StdEncoding.EncodeToString(sig)})
	if err != nil || !got.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("CosignatureTime = %v, %v; want %v", got, err, time.Unix(1700000000, 0).UTC())
	}
	// An Ed25519 note signature (a log's) is 4+64 bytes: not a cosignature.
	short := base64.StdEncoding.EncodeToString(make([]byte, 4+ed25519.SignatureSize))
	if _, err := CosignatureTime(note.Signature{Name: "w", Base64: short}); err == nil {
		t.Fatal("CosignatureTime accepts a 68-byte signature")
	}
}

// TestCosignedRequiresTheLogSignature checks that a checkpoint carrying a
// valid cosignature but no signature by the log is refused: a witness's word
// does not replace the log's.
func TestCosignedRequiresTheLogSignature(t *testing.T) {
	s := newTorchwoodSigner(t, "witness.example/w1")
	v, err := ParseVerifierKey(s.Verifier().String())
	if err != nil {
		t.Fatal(err)
	}
	l := newTestLog(t, "example.test/log").grow(t, 3, "entry")
	onlyWitness, err := note.Sign(&note.Note{Text: l.checkpointText(t, 3)}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Cosigned(onlyWitness, l.verifier, []*Verifier{v}); err == nil {
		t.Fatal("Cosigned accepts a checkpoint without the log's signature")
	}
}
