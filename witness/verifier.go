// Package witness owns the project's side of transparency-log witnessing:
// the C2SP tlog-cosignature/v1 verifier keys and signatures
// (https://c2sp.org/tlog-cosignature), a client of the tlog-witness protocol
// (https://c2sp.org/tlog-witness) that asks a witness to cosign a checkpoint,
// and a small development witness that speaks the same protocol.
//
// A witness cosignature says "I, the witness, saw this checkpoint and checked
// that it extends every earlier checkpoint of the same log I had seen". A log
// that shows one history to some people and another to others (a split view)
// cannot get both histories cosigned by the same honest witness, which is why
// a checkpoint is worth more with cosignatures than without.
//
// The package is self-contained: it depends on golang.org/x/mod/sumdb (notes
// and Merkle trees) and filippo.io/torchwood (checkpoints and the cosignature
// signer), never on other packages of the project, so that the audit journal
// and the development tools can both use it.
package witness

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
)

// algCosignatureV1 is the signed-note key type byte of cosignature/v1 keys.
// Ordinary Ed25519 note keys (the logs' keys) use 0x01.
const algCosignatureV1 = 0x04

// cosignatureSize is the length of a cosignature/v1 signature as carried in
// a note, after the 4-byte key hash: an 8-byte timestamp and an Ed25519
// signature.
const cosignatureSize = 8 + ed25519.SignatureSize

// Errors returned by ParseVerifierKey, to be checked with errors.Is.
var (
	// ErrMalformedKey means the string is not a <name>+<hash>+<base64 key>
	// verifier key.
	ErrMalformedKey = errors.New("malformed verifier key")
	// ErrKeyHash means the key hash in the string is not the hash of the
	// name and key it carries: the key was mistyped or tampered with.
	ErrKeyHash = errors.New("verifier key hash does not match its name and key")
	// ErrKeyType means the key is well formed but is not a cosignature/v1
	// key (for example an Ed25519 note key, type 0x01, which is a log key).
	ErrKeyType = errors.New("verifier key is not a cosignature/v1 key")
)

// Verifier is the verifier of one witness's cosignature/v1 signatures. It
// implements note.Verifier, so that note.Open can check cosignature lines
// alongside a log's own signature.
type Verifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

var _ note.Verifier = (*Verifier)(nil)

// ParseVerifierKey parses a cosignature/v1 verifier key, as a witness
// publishes it: <name>+<8 hex digits of key hash>+<base64(0x04 ‖ Ed25519
// public key)>, where the key hash is the first four bytes of
// SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key).
func ParseVerifierKey(vkey string) (*Verifier, error) {
	name, rest, ok1 := strings.Cut(vkey, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || !isValidName(name) || len(hash16) != 8 {
		return nil, fmt.Errorf("witness: parse %q: %w", vkey, ErrMalformedKey)
	}
	hash, err := strconv.ParseUint(hash16, 16, 32)
	if err != nil {
		return nil, fmt.Errorf("witness: parse %q: key hash: %w", vkey, ErrMalformedKey)
	}
	key, err := base64.StdEncoding.DecodeString(key64)
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("witness: parse %q: key: %w", vkey, ErrMalformedKey)
	}
	if key[0] != algCosignatureV1 {
		return nil, fmt.Errorf("witness: parse %q: key type 0x%02x, want 0x%02x: %w", vkey, key[0], algCosignatureV1, ErrKeyType)
	}
	if len(key) != 1+ed25519.PublicKeySize {
		return nil, fmt.Errorf("witness: parse %q: key is %d bytes, want %d: %w", vkey, len(key)-1, ed25519.PublicKeySize, ErrMalformedKey)
	}
	v := &Verifier{name: name, hash: uint32(hash), key: ed25519.PublicKey(key[1:])}
	if want := keyHash(name, v.key); v.hash != want {
		return nil, fmt.Errorf("witness: parse %q: key hash %08x, computed %08x: %w", vkey, v.hash, want, ErrKeyHash)
	}
	return v, nil
}

// NewVerifier returns the cosignature/v1 verifier of the witness with the
// given name and Ed25519 public key.
func NewVerifier(name string, pub ed25519.PublicKey) (*Verifier, error) {
	if !isValidName(name) {
		return nil, fmt.Errorf("witness: invalid witness name %q", name)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("witness: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	key := ed25519.PublicKey(append([]byte(nil), pub...))
	return &Verifier{name: name, hash: keyHash(name, key), key: key}, nil
}

// Name returns the witness name, as it appears in cosignature lines.
func (v *Verifier) Name() string { return v.name }

// KeyHash returns the key hash that cosignature lines of this key carry.
func (v *Verifier) KeyHash() uint32 { return v.hash }

// String returns the verifier key, in the form ParseVerifierKey reads.
func (v *Verifier) String() string {
	return fmt.Sprintf("%s+%08x+%s", v.name, v.hash,
		base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, v.key...)))
}

// Verify reports whether sig (the note signature without its key hash:
// an 8-byte big-endian timestamp then an Ed25519 signature) is this
// witness's cosignature of msg. msg must be a checkpoint in its canonical
// form: a witness never cosigns anything else, so anything else is refused.
func (v *Verifier) Verify(msg, sig []byte) bool {
	if len(sig) != cosignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	signed, err := cosignedMessage(t, msg)
	if err != nil {
		return false
	}
	return ed25519.Verify(v.key, signed, sig[8:])
}

// cosignedMessage returns the bytes a cosignature/v1 signature covers.
func cosignedMessage(t uint64, msg []byte) ([]byte, error) {
	if t > math.MaxInt64 {
		return nil, errors.New("timestamp out of range")
	}
	c, err := torchwood.ParseCheckpoint(string(msg))
	if err != nil {
		return nil, err
	}
	if c.String() != string(msg) {
		return nil, errors.New("checkpoint is not in canonical form")
	}
	return fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", t, msg), nil
}

// CosignatureTime returns the time at which a witness made a cosignature/v1
// signature, as written in the signature. It does not verify the signature:
// call it on signatures that note.Open verified (note.Note.Sigs).
func CosignatureTime(sig note.Signature) (time.Time, error) {
	b, err := base64.StdEncoding.DecodeString(sig.Base64)
	if err != nil {
		return time.Time{}, fmt.Errorf("witness: cosignature of %s: %w", sig.Name, err)
	}
	if len(b) != 4+cosignatureSize {
		return time.Time{}, fmt.Errorf("witness: cosignature of %s is %d bytes, want %d", sig.Name, len(b), 4+cosignatureSize)
	}
	t := binary.BigEndian.Uint64(b[4:])
	if t > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("witness: cosignature of %s: timestamp out of range", sig.Name)
	}
	return time.Unix(int64(t), 0).UTC(), nil
}

// Cosignature is a verified witness cosignature found on a note.
type Cosignature struct {
	Name    string    // the witness name
	KeyHash uint32    // the witness key hash
	Time    time.Time // when the witness signed, as it says
}

// Cosigned opens a signed checkpoint and returns the note and the
// cosignatures in it made by the given witnesses. The log's signature must
// be present and valid. Signatures by keys that are neither the log's nor a
// listed witness's are ignored, as the protocol requires; a signature line
// that claims to be by the log or a listed witness but does not verify is an
// error (a note.InvalidSignatureError), never silently dropped.
func Cosigned(signedNote []byte, logVerifier note.Verifier, witnesses []*Verifier) (*note.Note, []Cosignature, error) {
	list := []note.Verifier{logVerifier}
	for _, w := range witnesses {
		list = append(list, w)
	}
	n, err := note.Open(signedNote, note.VerifierList(list...))
	if err != nil {
		return nil, nil, fmt.Errorf("witness: open cosigned checkpoint: %w", err)
	}
	var (
		logSigned bool
		by        []Cosignature
	)
	for _, sig := range n.Sigs {
		if sig.Name == logVerifier.Name() && sig.Hash == logVerifier.KeyHash() {
			logSigned = true
			continue
		}
		t, err := CosignatureTime(sig)
		if err != nil {
			return nil, nil, err
		}
		by = append(by, Cosignature{Name: sig.Name, KeyHash: sig.Hash, Time: t})
	}
	if !logSigned {
		return nil, nil, fmt.Errorf("witness: open cosigned checkpoint: no signature by the log key %s+%08x", logVerifier.Name(), logVerifier.KeyHash())
	}
	return n, by, nil
}

// isValidName reports whether name can be a note key name: non-empty, valid
// UTF-8, without spaces or pluses.
func isValidName(name string) bool {
	return name != "" && utf8.ValidString(name) &&
		strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// keyHash is the cosignature/v1 key hash of name and pub.
func keyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write([]byte{algCosignatureV1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}
