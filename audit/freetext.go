package audit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"aidants/store"
)

// Free text that a person, an aidant or an operator types — the reason of
// a disabling, an objection, the declaration of an error — is personal
// data the journal must not keep for ever: it lives in the free_texts
// table, erasable, and the event carries only its SHA-256 (SPEC §6). The
// hash covers a random salt kept beside the text, so that once the row is
// erased a short text ("départ à la retraite") cannot be found again by
// hashing guesses.

// MaxFreeText bounds a free text, in characters.
const MaxFreeText = 2000

// ErrFreeText is a free text that cannot be kept: empty, too long, or not
// text.
var ErrFreeText = errors.New("audit: invalid free text")

// FreeTextKey is the key of the events' detail that holds a free text's
// hash.
const FreeTextKey = "text_sha256"

// FreeTextHash is the hash an event carries for a text and its salt.
func FreeTextHash(salt []byte, text string) string {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(text))
	return hex.EncodeToString(h.Sum(nil))
}

// CleanFreeText trims text and checks it: valid UTF-8, not empty, at most
// MaxFreeText characters, no control characters but line breaks and tabs.
func CleanFreeText(text string) (string, error) {
	text = strings.TrimSpace(strings.ReplaceAll(text, "\r\n", "\n"))
	switch {
	case !utf8.ValidString(text):
		return "", fmt.Errorf("%w: not UTF-8", ErrFreeText)
	case text == "":
		return "", fmt.Errorf("%w: empty", ErrFreeText)
	case utf8.RuneCountInString(text) > MaxFreeText:
		return "", fmt.Errorf("%w: longer than %d characters", ErrFreeText, MaxFreeText)
	}
	for _, r := range text {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return "", fmt.Errorf("%w: control characters", ErrFreeText)
		}
	}
	return text, nil
}

// FreeText keeps text (cleaned by CleanFreeText) in the erasable table
// and returns the hash to put in the event's detail under FreeTextKey.
func (t *Tx) FreeText(text string) (string, error) {
	text, err := CleanFreeText(text)
	if err != nil {
		return "", err
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	hash := FreeTextHash(salt, text)
	if _, err := t.Exec(`INSERT INTO free_texts (hash, salt, body, created_at) VALUES (?, ?, ?, ?)`,
		hash, hex.EncodeToString(salt), text, store.T(t.now)); err != nil {
		return "", fmt.Errorf("audit: keep a free text: %w", err)
	}
	return hash, nil
}

// ErrErased is a free text that was erased: the event keeps its hash, and
// nothing else is left.
var ErrErased = errors.New("audit: this text was erased")

// FreeTextOf returns the text whose hash an event carries: ErrErased when
// it was erased, store.ErrNotFound when there never was one.
func FreeTextOf(ctx context.Context, db *store.DB, hash string) (string, error) {
	var row struct {
		Body   sql.NullString `db:"body"`
		Erased sql.NullInt64  `db:"erased_at"`
	}
	err := db.R.GetContext(ctx, &row, db.Rebind(`SELECT body, erased_at FROM free_texts WHERE hash = ?`), hash)
	if err != nil {
		return "", store.NotFound(err, "free text")
	}
	if row.Erased.Valid || !row.Body.Valid {
		return "", ErrErased
	}
	return row.Body.String, nil
}

// EraseFreeText erases a free text, keeping the row (with its hash and
// the time of erasure) so that the event's hash is known to have pointed
// at a text that was erased, not at nothing; the erasure is journaled
// (text.erased) by actor.
func (t *Tx) EraseFreeText(actor Actor, hash string) error {
	res, err := t.Exec(`UPDATE free_texts SET body = NULL, salt = NULL, erased_at = ? WHERE hash = ? AND erased_at IS NULL`,
		store.T(t.now), hash)
	if err != nil {
		return fmt.Errorf("audit: erase a free text: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.NotFound(sql.ErrNoRows, "free text")
	}
	_, err = t.Append(Event{Type: TextErased, Actor: actor, Detail: map[string]any{FreeTextKey: hash}})
	return err
}

// checkFreeTexts reports the free texts that no longer hash to their key
// (changed since they were kept): what is stored beside the journal must
// not change unseen.
func checkFreeTexts(ctx context.Context, db *store.DB) ([]string, error) {
	var problems []string
	rows, err := db.R.QueryxContext(ctx, `SELECT hash, salt, body FROM free_texts WHERE erased_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("audit: read the free texts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var hash string
		var salt, body sql.NullString
		if err := rows.Scan(&hash, &salt, &body); err != nil {
			return nil, err
		}
		s, err := hex.DecodeString(salt.String)
		if err != nil || !body.Valid || FreeTextHash(s, body.String) != hash {
			problems = append(problems, fmt.Sprintf("the free text %s was changed after it was kept", hash))
		}
	}
	return problems, rows.Err()
}
