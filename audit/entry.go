package audit

import (
	"crypto/sha256"
	"strings"
)

// SaltSize is the size of the random salt kept beside each event.
const SaltSize = 32

// EntrySize is the size of an event's public entry.
const EntrySize = sha256.Size

// EntryOf is the public entry of an event (SPEC §6.1): SHA-256(salt ‖
// canonical body). The tree's leaf is tlog.RecordHash(entry), and the
// entry bundles served as tiles hold entries only: a commitment that says
// nothing about the event to whoever lacks its salt, and binds it for
// whoever holds body and salt.
func EntryOf(salt, body []byte) [EntrySize]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(body)
	var e [EntrySize]byte
	h.Sum(e[:0])
	return e
}

// demarchesColumn is the démarches column of an event: ",code,code," so
// that a LIKE '%,code,%' filter finds one.
func demarchesColumn(ds []string) string {
	return "," + strings.Join(ds, ",") + ","
}
