package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ReceiptFormat names the receipt format (docs/RECEIPTS.md).
const ReceiptFormat = "aidants-receipt/2"

// Receipt lets anyone check, offline and with any RFC 6962 library, that
// an event is in the log the instance signed and its witnesses cosigned:
// the exact event bytes and their salt, the entry and leaf hash they give,
// the leaf's index in its origin's tree, an inclusion proof up to a
// checkpoint, and the log's public key.
type Receipt struct {
	Format string `json:"format"`
	Origin string `json:"origin"`
	Key    string `json:"key"`
	// Checkpoint is the signed note the proof leads to, with the witnesses'
	// cosignatures when Witnessed.
	Checkpoint string `json:"checkpoint"`
	// Witnessed is false when the event is newer than the newest
	// checkpoint the witnesses cosigned: the receipt can be fetched again
	// later.
	Witnessed bool        `json:"witnessed"`
	Index     int64       `json:"index"`
	Size      int64       `json:"size"`
	Event     string      `json:"event"`
	Salt      []byte      `json:"salt"`
	Entry     []byte      `json:"entry"`
	LeafHash  tlog.Hash   `json:"leaf_hash"`
	Proof     []tlog.Hash `json:"proof"`
}

// ReceiptFor builds the receipt of the event at global position index,
// proved against the newest witnessed checkpoint of its origin that
// covers it, or else against the origin's latest signed checkpoint.
// usagerID restricts it to the person's events.
func (l *Log) ReceiptFor(ctx context.Context, index int64, usagerID string) (*Receipt, error) {
	e, err := l.At(ctx, index, usagerID)
	if err != nil {
		return nil, err
	}
	origins, err := Origins(ctx, l.db)
	if err != nil {
		return nil, err
	}
	o, err := originOf(origins, index)
	if err != nil {
		return nil, err
	}
	leaf := index - o.Start
	cp, witnessed, err := l.receiptCheckpoint(ctx, o, leaf)
	if err != nil {
		return nil, err
	}
	p, err := l.inclusionIn(o, leaf, cp.Size)
	if err != nil {
		return nil, err
	}
	entry := e.Entry()
	if tlog.RecordHash(entry[:]) != p.LeafHash {
		return nil, fmt.Errorf("audit: receipt of %d: the stored leaf hash is not the event's", index)
	}
	return &Receipt{Format: ReceiptFormat, Origin: o.Name, Key: o.VKey, Checkpoint: string(cp.Note), Witnessed: witnessed,
		Index: leaf, Size: cp.Size, Event: string(e.Body), Salt: e.Salt, Entry: entry[:], LeafHash: p.LeafHash, Proof: p.Hashes}, nil
}

// receiptCheckpoint picks the checkpoint a receipt proves against.
func (l *Log) receiptCheckpoint(ctx context.Context, o *Origin, leaf int64) (*Checkpoint, bool, error) {
	if w, err := l.witnessedOf(ctx, o); err == nil && w.Size > leaf {
		return w, true, nil
	} else if err != nil && !errors.Is(err, ErrNotWitnessed) {
		return nil, false, err
	}
	var msg []byte
	if err := l.db.R.GetContext(ctx, &msg, l.db.Rebind(`SELECT note FROM audit_checkpoints WHERE origin_no = ? ORDER BY gsize DESC LIMIT 1`), o.No); err != nil {
		return nil, false, fmt.Errorf("audit: checkpoint of origin %q: %w", o.Name, err)
	}
	cp, err := ParseCheckpoint(msg, o.VKey)
	if err != nil {
		return nil, false, err
	}
	return cp, false, nil
}

// ReceiptError says why a receipt does not verify.
type ReceiptError struct{ Msg string }

func (e *ReceiptError) Error() string { return "receipt: " + e.Msg }

// ErrReceiptNotWitnessed is returned by VerifyReceipt for a receipt whose
// proof holds but whose checkpoint lacks the witnesses' cosignatures that
// were asked for: its event is newer than what they had cosigned when it
// was made. The same receipt fetched again later carries them.
var ErrReceiptNotWitnessed = errors.New("receipt: not yet cosigned by enough witnesses: download it again later")

// ReceiptCheck is what VerifyReceipt found.
type ReceiptCheck struct {
	Event     Event
	Witnesses []string // names of the witnesses whose cosignature verified
}

// VerifyReceipt checks a receipt offline against the log's public key
// (vkey, from a trusted source: never the receipt's own key alone) and,
// when quorum > 0, against at least quorum of the given witnesses'
// cosignatures (their keys from a trusted source too: a list inside the
// receipt would vouch for itself): the checkpoint's signatures, the entry
// from the event bytes and salt, its leaf hash, and the inclusion proof up
// to the checkpoint's root.
func VerifyReceipt(data []byte, vkey string, witnesses []note.Verifier, quorum int) (*ReceiptCheck, error) {
	var r Receipt
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, &ReceiptError{"not a receipt: " + err.Error()}
	}
	if r.Format != ReceiptFormat {
		return nil, &ReceiptError{fmt.Sprintf("unknown format %q (this program reads %s)", r.Format, ReceiptFormat)}
	}
	if r.Key != vkey {
		return nil, &ReceiptError{"signed by another key than the log's"}
	}
	logV, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, &ReceiptError{"the log's key is not a note verifier key: " + err.Error()}
	}
	n, err := note.Open([]byte(r.Checkpoint), note.VerifierList(append([]note.Verifier{logV}, witnesses...)...))
	if err != nil {
		return nil, &ReceiptError{"the checkpoint's signatures do not verify: " + err.Error()}
	}
	check := &ReceiptCheck{}
	logSigned := false
	for _, s := range n.Sigs {
		if s.Name == logV.Name() && s.Hash == logV.KeyHash() {
			logSigned = true
			continue
		}
		check.Witnesses = append(check.Witnesses, s.Name)
	}
	if !logSigned {
		return nil, &ReceiptError{"the checkpoint is not signed by the log's key"}
	}
	cp, err := parseUnverified([]byte(r.Checkpoint))
	if err != nil || cp.Origin != logV.Name() || cp.Origin != r.Origin {
		return nil, &ReceiptError{"the checkpoint is not one of this log"}
	}
	if cp.Size != r.Size || r.Index < 0 || r.Index >= cp.Size {
		return nil, &ReceiptError{fmt.Sprintf("index %d is not within the checkpoint's %d events", r.Index, cp.Size)}
	}
	if len(r.Salt) != SaltSize {
		return nil, &ReceiptError{"the salt is not 32 bytes"}
	}
	entry := EntryOf(r.Salt, []byte(r.Event))
	if !bytes.Equal(entry[:], r.Entry) {
		return nil, &ReceiptError{"SHA-256(salt ‖ event) is not the receipt's entry: the event was modified"}
	}
	leaf := tlog.RecordHash(entry[:])
	if leaf != r.LeafHash {
		return nil, &ReceiptError{"the entry's hash is not the receipt's leaf"}
	}
	if err := tlog.CheckRecord(r.Proof, cp.Size, cp.Root, r.Index, leaf); err != nil {
		return nil, &ReceiptError{"the inclusion proof does not lead to the signed root: " + err.Error()}
	}
	ev, err := ParseEvent([]byte(r.Event))
	if err != nil {
		return nil, &ReceiptError{"the event cannot be read: " + err.Error()}
	}
	if b, _ := ev.Canonical(); string(b) != r.Event {
		return nil, &ReceiptError{"the event is not in canonical form"}
	}
	check.Event = ev
	if len(check.Witnesses) < quorum {
		return check, ErrReceiptNotWitnessed
	}
	return check, nil
}
