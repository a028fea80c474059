package mandate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/internal/jwtverify"
	"aidants/store"
)

// Verification outcomes.
const (
	VerifyValid   = "valid"
	VerifyRevoked = "revoked"
	VerifyExpired = "expired"
	VerifyUnknown = "unknown"
	VerifyInvalid = "invalid"
)

// Verification is what a signed mandate is worth now. Reason is a French
// sentence for people; Claims is set once the signature verified.
type Verification struct {
	Status  string
	Reason  string
	Claims  *Claims
	Revoked []string // démarches withdrawn, for a mandate still valid for others
}

// Valid tells whether the mandate can be relied on.
func (v *Verification) Valid() bool { return v.Status == VerifyValid }

// maxJWS bounds what Verify accepts.
const maxJWS = 16 << 10

// Verify checks a signed mandate: ES256 only (never "none" nor HS*), typ
// mandate+jwt, a key published in this instance's JWKS, a signature that
// verifies, this instance as issuer, not expired; then what this instance
// knows of it: unknown, revoked (wholly or in part), or valid.
func (s *Service) Verify(ctx context.Context, compact string) (*Verification, error) {
	compact = strings.TrimSpace(compact)
	invalid := func(reason string) (*Verification, error) {
		return &Verification{Status: VerifyInvalid, Reason: reason}, nil
	}
	if compact == "" || len(compact) > maxJWS {
		return invalid("Ce n'est pas un mandat signé.")
	}
	tok, err := jwtverify.Parse(compact, jose.ES256)
	if errors.Is(err, jwtverify.ErrAlgorithm) {
		return invalid("L'algorithme de signature n'est pas accepté (seul ES256 l'est).")
	}
	if err != nil {
		return invalid("Ce n'est pas un mandat signé lisible.")
	}
	if tok.Type != MandateType {
		return invalid("Ce document signé n'est pas un mandat (type « " + tok.Type + " »).")
	}
	key, ok, err := s.keys.Public(ctx, tok.KeyID)
	if err != nil {
		return nil, fmt.Errorf("mandate: verify: %w", err)
	}
	if !ok {
		return invalid("La clé qui a signé ce mandat n'est pas une clé de ce service.")
	}
	var c Claims
	// An expired mandate is reported as such, below, not as invalid.
	_, err = tok.Verify(key, jwtverify.Expect{Type: MandateType, AllowExpired: true, Now: s.now()}, &c)
	switch {
	case errors.Is(err, jwtverify.ErrSignature):
		return invalid("La signature ne correspond pas au contenu : le mandat a été modifié.")
	case errors.Is(err, jwtverify.ErrNotYet):
		return invalid("Ce mandat n'est pas encore valable (sa date de début est à venir).")
	case err != nil || c.ID == "":
		return invalid("Le contenu du mandat est illisible.")
	}
	if c.Issuer != s.issuer {
		return invalid("Ce mandat a été émis par un autre service (" + c.Issuer + ").")
	}
	v := &Verification{Claims: &c}
	now := s.now()
	if !now.Before(time.Unix(c.Expiry, 0)) {
		v.Status, v.Reason = VerifyExpired, "Ce mandat est arrivé à échéance le "+FrenchDateTime(time.Unix(c.Expiry, 0))+"."
		return v, nil
	}
	var m Mandate
	err = s.db.R.GetContext(ctx, &m, s.db.Rebind(`SELECT `+mandateColumns+` FROM mandates WHERE id = ?`), c.ID)
	if errors.Is(store.NotFound(err, ""), store.ErrNotFound) {
		v.Status, v.Reason = VerifyUnknown, "Ce service n'a pas de mandat avec ce numéro."
		return v, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mandate: verify: %w", err)
	}
	if m.JWS != compact {
		v.Status, v.Reason = VerifyUnknown, "Ce document ne correspond pas au mandat enregistré sous ce numéro."
		return v, nil
	}
	if err := s.db.R.SelectContext(ctx, &m.Demarches, s.db.Rebind(`SELECT `+demarcheColumns+` FROM mandate_demarches WHERE mandate_id = ?`), c.ID); err != nil {
		return nil, fmt.Errorf("mandate: verify: %w", err)
	}
	switch m.Status(now) {
	case Revoked:
		v.Status, v.Reason = VerifyRevoked, "Ce mandat a été retiré"
		if !m.RevokedAt.IsZero() {
			v.Reason += " le " + FrenchDateTime(m.RevokedAt.Time)
		}
		v.Reason += "."
	case Expired:
		v.Status, v.Reason = VerifyExpired, "Ce mandat est arrivé à échéance."
	default:
		v.Status, v.Reason = VerifyValid, "Ce mandat est valide : signature vérifiée, en cours, non retiré."
		for _, d := range m.Demarches {
			if d.Revoked() {
				v.Revoked = append(v.Revoked, d.Code)
			}
		}
		if len(v.Revoked) > 0 {
			v.Reason = "Ce mandat est valide pour une partie de ses démarches ; certaines ont été retirées."
		}
	}
	return v, nil
}
