package mandate

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"aidants/audit"
	"aidants/store"
)

// Errors of the mandate domain. Handlers turn them into pages.
var (
	ErrNotFound          = store.ErrNotFound
	ErrOtherOrganisation = errors.New("mandate: belongs to another organisation")
	ErrDemarcheRefused   = errors.New("mandate: démarche not allowed for this organisation")
	ErrNoDemarche        = errors.New("mandate: no démarche chosen")
	ErrBadDuration       = errors.New("mandate: unknown duration")
	ErrBadMethod         = errors.New("mandate: unknown consent method")
	ErrDraftExpired      = errors.New("mandate: the draft has expired")
	ErrDraftState        = errors.New("mandate: the draft is not at this step")
	ErrLinkUsed          = errors.New("mandate: the consent link was already used")
	ErrNonce             = errors.New("mandate: the person's authentication is not bound to this draft")
	ErrWrongPerson       = errors.New("mandate: a renewal must be accepted by the person of the mandate")
	ErrNotConfirmed      = errors.New("mandate: both confirmations are required")
	ErrRevoked           = errors.New("mandate: revoked")
	ErrExpired           = errors.New("mandate: expired")
	ErrNotRenewable      = errors.New("mandate: can no longer be renewed")
	ErrReason            = errors.New("mandate: a reason is required")
	ErrReasonText        = errors.New("mandate: the reason's text is missing or too long")
	ErrIdentity          = errors.New("mandate: the FranceConnect identity lacks claims a mandate needs")
)

// Consent methods.
const (
	OnSite = "on_site"
	Remote = "remote"
)

// Draft statuses, as stored. "expired" is derived from time.
const (
	DraftPending    = "pending"
	DraftIdentified = "identified"
	DraftAccepted   = "accepted"
	DraftRefused    = "refused"
	DraftCompleted  = "completed"
	DraftExpired    = "expired"
)

// onSiteTTL bounds an on-site draft: the person is in front of the aidant.
const onSiteTTL = 2 * time.Hour

// Actor is an aidant acting for their current organisation.
type Actor struct {
	AidantID       string
	OrganisationID string
}

func (a Actor) audit() audit.Actor { return audit.Actor{Kind: audit.ActorAidant, ID: a.AidantID} }

// Draft is a mandate being prepared: what the aidant proposes, waiting for
// the person's FranceConnect authentication and consent.
type Draft struct {
	ID             string     `db:"id"`
	OrganisationID string     `db:"organisation_id"`
	CreatedBy      string     `db:"created_by"`
	CreatedAt      store.Time `db:"created_at"`
	Demarches      store.List `db:"demarches"`
	Duration       string     `db:"duration"`
	Method         string     `db:"method"`
	Renews         string     `db:"renews"`
	Digest         string     `db:"digest"`
	Salt           string     `db:"salt"`
	Status         string     `db:"status"`
	ExpiresAt      store.Time `db:"expires_at"`
	UsagerID       string     `db:"usager_id"`
	EvidenceToken  string     `db:"evidence_token"`
	EvidenceJWK    string     `db:"evidence_jwk"`
	IdentifiedAt   store.Time `db:"identified_at"`
	DecidedAt      store.Time `db:"decided_at"`
	MandateID      string     `db:"mandate_id"`
	LinkHash       string     `db:"link_hash"` // SHA-256 of the consent link's token, for a remote draft
}

const draftColumns = `id, organisation_id, created_by, created_at, demarches, duration, method, COALESCE(renews, '') AS renews,
	digest, salt, status, expires_at, COALESCE(usager_id, '') AS usager_id, COALESCE(evidence_token, '') AS evidence_token,
	COALESCE(evidence_jwk, '') AS evidence_jwk, identified_at, decided_at, COALESCE(mandate_id, '') AS mandate_id,
	COALESCE(link_hash, '') AS link_hash`

// State is the draft's status as of now: "expired" once past its end
// while still waiting.
func (d *Draft) State(now time.Time) string {
	if (d.Status == DraftPending || d.Status == DraftIdentified) && !now.Before(d.ExpiresAt.Time) {
		return DraftExpired
	}
	return d.Status
}

// DurationSpan is the length the person consents to.
func (d *Draft) DurationSpan() Duration {
	dur, _ := LookupDuration(d.Duration)
	return dur
}

// canonicalDraft is what the person's authentication is bound to: every
// term of the proposal, in canonical JSON (keys sorted).
type canonicalDraft struct {
	CreatedAt    string   `json:"created_at"`
	CreatedBy    string   `json:"created_by"`
	Demarches    []string `json:"demarches"`
	Duration     string   `json:"duration"`
	ID           string   `json:"id"`
	Method       string   `json:"method"`
	Organisation string   `json:"organisation"`
	Renews       string   `json:"renews"`
}

// digestOf returns the SHA-256 of the draft's canonical JSON.
func digestOf(d *Draft) []byte {
	b, _ := json.Marshal(canonicalDraft{
		CreatedAt: d.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z"), CreatedBy: d.CreatedBy,
		Demarches: d.Demarches, Duration: d.Duration, ID: d.ID, Method: d.Method,
		Organisation: d.OrganisationID, Renews: d.Renews,
	})
	sum := sha256.Sum256(b)
	return sum[:]
}

// ConsentNonce is the FranceConnect nonce of the draft (SPEC §5.1):
// base64url(SHA-256(draft_digest || salt)), over the raw bytes of the
// digest and of the salt. Anyone holding the mandate's draft_digest and
// salt can recompute it and find it in the stored ID token.
func ConsentNonce(digest, salt string) (string, error) {
	dg, err := base64.RawURLEncoding.DecodeString(digest)
	if err != nil || len(dg) != sha256.Size {
		return "", fmt.Errorf("mandate: bad draft digest")
	}
	sl, err := base64.RawURLEncoding.DecodeString(salt)
	if err != nil || len(sl) != 16 {
		return "", fmt.Errorf("mandate: bad salt")
	}
	sum := sha256.Sum256(append(dg, sl...))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// Nonce is the draft's FranceConnect nonce.
func (d *Draft) Nonce() string {
	n, _ := ConsentNonce(d.Digest, d.Salt)
	return n
}

// NewDraft is what the aidant proposes.
type NewDraft struct {
	Demarches []string
	Duration  string // 1j, 1m, 6m, 1a
	Method    string // on_site or remote
	Renews    string // a mandate id, for a renewal
}

// CreateDraft records a proposal (mandate.draft_created). The démarches
// must be in the organisation's allowed set, read inside the transaction;
// a remote draft also gets its one-time consent link
// (mandate.consent_link_created), whose token is returned once and stored
// hashed.
func (s *Service) CreateDraft(ctx context.Context, a Actor, n NewDraft) (*Draft, string, error) {
	dem, err := ParseDemarches(n.Demarches)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrDemarcheRefused, err)
	}
	if len(dem) == 0 {
		return nil, "", ErrNoDemarche
	}
	dur, ok := LookupDuration(n.Duration)
	if !ok {
		return nil, "", ErrBadDuration
	}
	if n.Method != OnSite && n.Method != Remote {
		return nil, "", ErrBadMethod
	}
	var d *Draft
	var token string
	err = s.log.Write(ctx, func(tx *audit.Tx) error {
		var o orgRow
		if err := tx.Get(&o, `SELECT demarches, active FROM organisations WHERE id = ?`, a.OrganisationID); err != nil {
			return store.NotFound(err, "organisation")
		}
		if !o.Active || !Allowed(o.Demarches, dem) {
			return ErrDemarcheRefused
		}
		now := tx.Now()
		d = &Draft{ID: store.NewID("drf"), OrganisationID: a.OrganisationID, CreatedBy: a.AidantID, CreatedAt: store.T(now),
			Demarches: dem, Duration: dur.Code, Method: n.Method, Renews: n.Renews, Status: DraftPending,
			Salt: store.RandomToken(16), ExpiresAt: store.T(now.Add(onSiteTTL))}
		d.Digest = base64.RawURLEncoding.EncodeToString(digestOf(d))
		var linkHash any
		if n.Method == Remote {
			token = store.RandomToken(32)
			linkHash = store.Hash(token)
			d.ExpiresAt = store.T(now.Add(s.linkTTL))
		}
		var renews any
		if n.Renews != "" {
			renews = n.Renews
		}
		if _, err := tx.Exec(`INSERT INTO mandate_drafts (id, organisation_id, created_by, created_at, demarches, duration, method, renews,
			digest, salt, status, link_hash, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.ID, d.OrganisationID, d.CreatedBy, d.CreatedAt, d.Demarches, d.Duration, d.Method, renews,
			d.Digest, d.Salt, d.Status, linkHash, d.ExpiresAt); err != nil {
			return err
		}
		detail := map[string]any{"draft": d.ID, "duration": d.Duration, "method": d.Method}
		if n.Renews != "" {
			detail["renews"] = n.Renews
		}
		if _, err := tx.Append(audit.Event{Type: audit.MandateDraftCreated, Actor: a.audit(), Aidant: a.AidantID,
			Organisation: a.OrganisationID, Mandate: n.Renews, Demarches: dem, Detail: detail}); err != nil {
			return err
		}
		if n.Method == Remote {
			_, err := tx.Append(audit.Event{Type: audit.MandateConsentLinkCreated, Actor: a.audit(), Aidant: a.AidantID,
				Organisation: a.OrganisationID, Demarches: dem,
				Detail: map[string]any{"draft": d.ID, "expires_at": d.ExpiresAt.UTC().Format(time.RFC3339)}})
			return err
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return d, token, nil
}

// Draft returns a draft of the actor's organisation; a draft of another
// organisation gives ErrOtherOrganisation (to be logged as access.denied),
// an unknown id ErrNotFound.
func (s *Service) Draft(ctx context.Context, a Actor, id string) (*Draft, error) {
	var d Draft
	err := s.db.R.GetContext(ctx, &d, s.db.Rebind(`SELECT `+draftColumns+` FROM mandate_drafts WHERE id = ?`), id)
	if err != nil {
		return nil, store.NotFound(err, "draft")
	}
	if d.OrganisationID != a.OrganisationID {
		return nil, ErrOtherOrganisation
	}
	return &d, nil
}

// DraftByLink returns the draft of a remote consent link.
func (s *Service) DraftByLink(ctx context.Context, token string) (*Draft, error) {
	var d Draft
	err := s.db.R.GetContext(ctx, &d, s.db.Rebind(`SELECT `+draftColumns+` FROM mandate_drafts WHERE link_hash = ?`), store.Hash(token))
	if err != nil {
		return nil, store.NotFound(err, "consent link")
	}
	return &d, nil
}

// RemoteDrafts lists the organisation's remote consents, newest first.
func (s *Service) RemoteDrafts(ctx context.Context, orgID string) ([]Draft, error) {
	var out []Draft
	err := s.db.R.SelectContext(ctx, &out, s.db.Rebind(`SELECT `+draftColumns+` FROM mandate_drafts
		WHERE organisation_id = ? AND method = 'remote' ORDER BY created_at DESC LIMIT 200`), orgID)
	return out, err
}

type orgRow struct {
	Demarches store.List `db:"demarches"`
	Active    bool       `db:"active"`
}

// loadDraft reads a draft inside a unit.
func loadDraft(tx *audit.Tx, where string, arg any) (*Draft, error) {
	var d Draft
	if err := tx.Get(&d, `SELECT `+draftColumns+` FROM mandate_drafts WHERE `+where, arg); err != nil {
		return nil, store.NotFound(err, "draft")
	}
	return &d, nil
}

// MaxLinkSends bounds how many times one consent link is sent by email (a
// mistyped address corrected, not a mailing).
const MaxLinkSends = 3

// ErrLinkSends: the consent link was already sent MaxLinkSends times.
var ErrLinkSends = errors.New("mandate: the consent link was sent too many times")

// SendLink journals that the aidant sends the remote consent link of
// their organisation's draft by email, and calls send inside the same
// unit to queue the message: the link must still be waiting for the
// person (the very token shown to the aidant), and is sent at most
// MaxLinkSends times. The event names no address.
func (s *Service) SendLink(ctx context.Context, a Actor, draftID, link string, send func(tx *audit.Tx, d *Draft) error) error {
	return s.log.Write(ctx, func(tx *audit.Tx) error {
		d, err := loadDraft(tx, `id = ?`, draftID)
		if err != nil {
			return err
		}
		if d.OrganisationID != a.OrganisationID {
			return ErrOtherOrganisation
		}
		if d.Method != Remote {
			return ErrDraftState
		}
		if err := checkWaiting(d, link, tx.Now()); err != nil {
			return err
		}
		var sends int
		if err := tx.Get(&sends, `SELECT link_sends FROM mandate_drafts WHERE id = ?`, d.ID); err != nil {
			return err
		}
		if sends >= MaxLinkSends {
			return ErrLinkSends
		}
		if _, err := tx.Exec(`UPDATE mandate_drafts SET link_sends = link_sends + 1 WHERE id = ?`, d.ID); err != nil {
			return err
		}
		if _, err := tx.Append(audit.Event{Type: audit.MandateConsentLinkSent, Actor: a.audit(), Aidant: a.AidantID,
			Organisation: a.OrganisationID, Demarches: d.Demarches, Detail: map[string]any{"draft": d.ID}}); err != nil {
			return err
		}
		return send(tx, d)
	})
}
