package mandate

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jmoiron/sqlx"

	"aidants/audit"
	"aidants/keys"
	"aidants/store"
)

// Mandate statuses, derived from the record and from time.
const (
	Active  = "active"
	Expired = "expired"
	Revoked = "revoked"
)

// Mandate is a signed, active or past, authorisation of an organisation to
// act for a person.
type Mandate struct {
	ID             string     `db:"id"`
	OrganisationID string     `db:"organisation_id"`
	UsagerID       string     `db:"usager_id"`
	CreatedBy      string     `db:"created_by"`
	CreatedAt      store.Time `db:"created_at"`
	ExpiresAt      store.Time `db:"expires_at"`
	Method         string     `db:"method"`
	DraftID        string     `db:"draft_id"`
	Renews         string     `db:"renews"`
	JWS            string     `db:"jws"`
	EvidenceToken  string     `db:"evidence_token"`
	EvidenceJWK    string     `db:"evidence_jwk"`
	RevokedAt      store.Time `db:"revoked_at"`
	RevokedByKind  string     `db:"revoked_by_kind"`
	RevokedBy      string     `db:"revoked_by"`
	// RevokeReason is a code of RevokeReasons (or, on mandates revoked
	// before codes, the text typed then); RevokeText the hash of the free
	// text given with it, kept erasable (audit.FreeTextOf).
	RevokeReason string `db:"revoke_reason"`
	RevokeText   string `db:"revoke_text"`
	// Démarches, with their own revocations.
	Demarches []MandateDemarche `db:"-"`
}

// MandateDemarche is one démarche of a mandate.
type MandateDemarche struct {
	MandateID     string     `db:"mandate_id"`
	Code          string     `db:"demarche"`
	RevokedAt     store.Time `db:"revoked_at"`
	RevokedByKind string     `db:"revoked_by_kind"`
	RevokedBy     string     `db:"revoked_by"`
	Reason        string     `db:"revoke_reason"`
	Text          string     `db:"revoke_text"`
}

// Label is the démarche's French label.
func (d MandateDemarche) Label() string { return Label(d.Code) }

// Revoked tells whether this démarche was withdrawn.
func (d MandateDemarche) Revoked() bool { return !d.RevokedAt.IsZero() }

const mandateColumns = `id, organisation_id, usager_id, created_by, created_at, expires_at, method, draft_id,
	COALESCE(renews, '') AS renews, jws, evidence_token, evidence_jwk, revoked_at, COALESCE(revoked_by_kind, '') AS revoked_by_kind,
	COALESCE(revoked_by, '') AS revoked_by, COALESCE(revoke_reason, '') AS revoke_reason, COALESCE(revoke_text, '') AS revoke_text`

const demarcheColumns = `mandate_id, demarche, revoked_at, COALESCE(revoked_by_kind, '') AS revoked_by_kind,
	COALESCE(revoked_by, '') AS revoked_by, COALESCE(revoke_reason, '') AS revoke_reason, COALESCE(revoke_text, '') AS revoke_text`

// Status is active, expired or revoked as of now: a mandate whose every
// démarche was withdrawn is revoked; expiry is only ever derived from time.
func (m *Mandate) Status(now time.Time) string {
	if !m.RevokedAt.IsZero() || len(m.ActiveDemarches()) == 0 {
		return Revoked
	}
	if !now.Before(m.ExpiresAt.Time) {
		return Expired
	}
	return Active
}

// ActiveDemarches lists the codes not withdrawn.
func (m *Mandate) ActiveDemarches() []string {
	var out []string
	for _, d := range m.Demarches {
		if !d.Revoked() {
			out = append(out, d.Code)
		}
	}
	return out
}

// Covers tells whether the mandate allows démarche code now.
func (m *Mandate) Covers(code string, now time.Time) bool {
	if m.Status(now) != Active {
		return false
	}
	for _, d := range m.ActiveDemarches() {
		if d == code {
			return true
		}
	}
	return false
}

// complete turns a draft the person consented to into a signed, active
// mandate, inside the unit; it supersedes the démarches of the person's
// earlier active mandates in the same organisation.
func (s *Service) complete(tx *audit.Tx, d *Draft, by audit.Actor) (*Mandate, error) {
	now := tx.Now()
	var o orgRow
	if err := tx.Get(&o, `SELECT demarches, active FROM organisations WHERE id = ?`, d.OrganisationID); err != nil {
		return nil, store.NotFound(err, "organisation")
	}
	// The organisation may have narrowed its démarches since the draft.
	if !o.Active || !Allowed(o.Demarches, d.Demarches) {
		return nil, ErrDemarcheRefused
	}
	m := &Mandate{ID: store.NewID("man"), OrganisationID: d.OrganisationID, UsagerID: d.UsagerID, CreatedBy: d.CreatedBy,
		CreatedAt: store.T(now), ExpiresAt: store.T(d.DurationSpan().Until(now)), Method: d.Method, DraftID: d.ID,
		Renews: d.Renews, EvidenceToken: d.EvidenceToken, EvidenceJWK: d.EvidenceJWK}
	for _, c := range d.Demarches {
		m.Demarches = append(m.Demarches, MandateDemarche{MandateID: m.ID, Code: c})
	}
	jws, err := s.sign(tx, m, d)
	if err != nil {
		return nil, err
	}
	m.JWS = jws
	var renews any
	if d.Renews != "" {
		renews = d.Renews
	}
	if _, err := tx.Exec(`INSERT INTO mandates (id, organisation_id, usager_id, created_by, created_at, expires_at, method, draft_id,
		renews, jws, evidence_token, evidence_jwk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.ID, m.OrganisationID, m.UsagerID, m.CreatedBy, m.CreatedAt, m.ExpiresAt, m.Method, m.DraftID, renews, m.JWS,
		m.EvidenceToken, m.EvidenceJWK); err != nil {
		return nil, err
	}
	for _, c := range d.Demarches {
		if _, err := tx.Exec(`INSERT INTO mandate_demarches (mandate_id, demarche) VALUES (?, ?)`, m.ID, c); err != nil {
			return nil, err
		}
	}
	status := DraftCompleted
	if d.Method == Remote {
		status = DraftAccepted
	}
	if _, err := tx.Exec(`UPDATE mandate_drafts SET status = ?, decided_at = ?, mandate_id = ? WHERE id = ?`, status, m.CreatedAt, m.ID, d.ID); err != nil {
		return nil, err
	}
	usager := audit.Actor{Kind: audit.ActorUsager, ID: m.UsagerID}
	ev := func(t string, actor audit.Actor, mandateID string, dem []string, detail map[string]any) error {
		_, err := tx.Append(audit.Event{Type: t, Actor: actor, Organisation: m.OrganisationID, Usager: m.UsagerID,
			Aidant: m.CreatedBy, Mandate: mandateID, Demarches: dem, Detail: detail})
		return err
	}
	if err := ev(audit.MandateConsentGiven, usager, m.ID, d.Demarches, map[string]any{"draft": d.ID, "method": d.Method}); err != nil {
		return nil, err
	}
	if err := ev(audit.MandateCreated, by, m.ID, d.Demarches, map[string]any{"draft": d.ID, "method": d.Method,
		"expires_at": m.ExpiresAt.UTC().Format(time.RFC3339)}); err != nil {
		return nil, err
	}
	if d.Renews != "" {
		if err := ev(audit.MandateRenewed, by, m.ID, d.Demarches, map[string]any{"renews": d.Renews}); err != nil {
			return nil, err
		}
	}
	return m, s.supersede(tx, m, now)
}

// supersede withdraws, from the person's other active mandates in the same
// organisation, the démarches the new mandate covers.
func (s *Service) supersede(tx *audit.Tx, m *Mandate, now time.Time) error {
	var rows []struct {
		MandateID string `db:"mandate_id"`
		Demarche  string `db:"demarche"`
	}
	err := tx.Select(&rows, `SELECT d.mandate_id, d.demarche FROM mandate_demarches d JOIN mandates m ON m.id = d.mandate_id
		WHERE m.organisation_id = ? AND m.usager_id = ? AND m.id <> ? AND m.revoked_at IS NULL AND m.expires_at > ?
		AND d.revoked_at IS NULL ORDER BY d.mandate_id`, m.OrganisationID, m.UsagerID, m.ID, store.T(now))
	if err != nil {
		return err
	}
	covered := map[string]bool{}
	for _, d := range m.Demarches {
		covered[d.Code] = true
	}
	byMandate := map[string][]string{}
	var order []string
	for _, r := range rows {
		if !covered[r.Demarche] {
			continue
		}
		if _, seen := byMandate[r.MandateID]; !seen {
			order = append(order, r.MandateID)
		}
		byMandate[r.MandateID] = append(byMandate[r.MandateID], r.Demarche)
	}
	for _, old := range order {
		dem := byMandate[old]
		for _, c := range dem {
			if _, err := tx.Exec(`UPDATE mandate_demarches SET revoked_at = ?, revoked_by_kind = 'system', revoked_by = ?, revoke_reason = 'superseded'
				WHERE mandate_id = ? AND demarche = ?`, store.T(now), m.ID, old, c); err != nil {
				return err
			}
		}
		if _, err := tx.Append(audit.Event{Type: audit.MandateSuperseded, Actor: audit.Actor{Kind: audit.ActorSystem, ID: "mandates"},
			Organisation: m.OrganisationID, Usager: m.UsagerID, Mandate: old, Demarches: dem, Reason: "superseded",
			Detail: map[string]any{"by": m.ID}}); err != nil {
			return err
		}
	}
	return nil
}

// Claims is the payload of a signed mandate (SPEC §5.3).
type Claims struct {
	ID          string       `json:"jti"`
	Issuer      string       `json:"iss"`
	IssuedAt    int64        `json:"iat"`
	NotBefore   int64        `json:"nbf"`
	Expiry      int64        `json:"exp"`
	Org         ClaimOrg     `json:"org"`
	Usager      ClaimUsager  `json:"usager"`
	Demarches   []string     `json:"demarches"`
	CreatedBy   ClaimAidant  `json:"created_by"`
	Consent     ClaimConsent `json:"consent"`
	DraftDigest string       `json:"draft_digest"`
	Salt        string       `json:"salt"`
	Renews      string       `json:"renews,omitempty"`
}

// ClaimOrg names the organisation.
type ClaimOrg struct {
	ID    string `json:"id"`
	SIRET string `json:"siret"`
	Name  string `json:"name"`
}

// ClaimUsager names the person; sub is this instance's pseudonymous id.
type ClaimUsager struct {
	Sub        string `json:"sub"`
	GivenName  string `json:"given_name"`
	FamilyName string `json:"family_name"`
	Birthdate  string `json:"birthdate"`
}

// ClaimAidant names the aidant who prepared it.
type ClaimAidant struct {
	ID         string `json:"id"`
	GivenName  string `json:"given_name"`
	FamilyName string `json:"family_name"`
}

// ClaimConsent says how the person consented; evidence_digest is the
// SHA-256 of the FranceConnect ID token kept as evidence.
type ClaimConsent struct {
	Method         string `json:"method"`
	EvidenceDigest string `json:"evidence_digest"`
}

// MandateType is the JWS header typ of a signed mandate.
const MandateType = "mandate+jwt"

func (s *Service) sign(tx *audit.Tx, m *Mandate, d *Draft) (string, error) {
	var names struct {
		OrgName   string `db:"org_name"`
		SIRET     string `db:"siret"`
		AidGiven  string `db:"aid_given"`
		AidFamily string `db:"aid_family"`
		UsaGiven  string `db:"usa_given"`
		UsaFamily string `db:"usa_family"`
		UsaBirth  string `db:"usa_birth"`
	}
	if err := tx.Get(&names, `SELECT o.name AS org_name, o.siret, a.given_name AS aid_given, a.family_name AS aid_family,
		u.given_name AS usa_given, u.family_name AS usa_family, u.birthdate AS usa_birth
		FROM organisations o, aidants a, usagers u WHERE o.id = ? AND a.id = ? AND u.id = ?`,
		m.OrganisationID, m.CreatedBy, m.UsagerID); err != nil {
		return "", fmt.Errorf("mandate: names for the signed mandate: %w", err)
	}
	ev := sha256.Sum256([]byte(m.EvidenceToken))
	c := Claims{
		ID: m.ID, Issuer: s.issuer, IssuedAt: m.CreatedAt.Unix(), NotBefore: m.CreatedAt.Unix(), Expiry: m.ExpiresAt.Unix(),
		Org:       ClaimOrg{ID: m.OrganisationID, SIRET: names.SIRET, Name: names.OrgName},
		Usager:    ClaimUsager{Sub: m.UsagerID, GivenName: names.UsaGiven, FamilyName: names.UsaFamily, Birthdate: names.UsaBirth},
		Demarches: d.Demarches, CreatedBy: ClaimAidant{ID: m.CreatedBy, GivenName: names.AidGiven, FamilyName: names.AidFamily},
		Consent:     ClaimConsent{Method: m.Method, EvidenceDigest: base64.RawURLEncoding.EncodeToString(ev[:])},
		DraftDigest: d.Digest, Salt: d.Salt, Renews: d.Renews,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signer, err := s.keys.Signer(context.Background(), keys.UseMandate, jose.ES256, MandateType)
	if err != nil {
		return "", fmt.Errorf("mandate: signer: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("mandate: sign: %w", err)
	}
	return obj.CompactSerialize()
}

// View is a mandate with the names people read.
type View struct {
	Mandate
	OrgName, SIRET                         string
	UsagerGiven, UsagerFamily, UsagerBirth string
	UsagerGender                           string // FranceConnect's: female, male, or ""
	AidantGiven, AidantFamily              string
}

// viewQuery selects mandates with their names; callers add the WHERE.
const viewQuery = `SELECT m.id, m.organisation_id, m.usager_id, m.created_by, m.created_at, m.expires_at, m.method, m.draft_id,
	COALESCE(m.renews, ''), m.jws, m.evidence_token, m.evidence_jwk, m.revoked_at, COALESCE(m.revoked_by_kind, ''),
	COALESCE(m.revoked_by, ''), COALESCE(m.revoke_reason, ''), COALESCE(m.revoke_text, ''),
	o.name, o.siret, u.given_name, u.family_name, u.birthdate, u.gender, a.given_name, a.family_name
	FROM mandates m JOIN organisations o ON o.id = m.organisation_id JOIN usagers u ON u.id = m.usager_id
	JOIN aidants a ON a.id = m.created_by`

func (s *Service) views(ctx context.Context, q sqlx.QueryerContext, where string, args ...any) ([]View, error) {
	rows, err := q.QueryxContext(ctx, s.db.Rebind(viewQuery+" WHERE "+where), args...)
	if err != nil {
		return nil, fmt.Errorf("mandate: list: %w", err)
	}
	defer rows.Close()
	var out []View
	for rows.Next() {
		var v View
		if err := rows.Scan(&v.ID, &v.OrganisationID, &v.UsagerID, &v.CreatedBy, &v.CreatedAt, &v.ExpiresAt, &v.Method, &v.DraftID,
			&v.Renews, &v.JWS, &v.EvidenceToken, &v.EvidenceJWK, &v.RevokedAt, &v.RevokedByKind, &v.RevokedBy, &v.RevokeReason, &v.RevokeText,
			&v.OrgName, &v.SIRET, &v.UsagerGiven, &v.UsagerFamily, &v.UsagerBirth, &v.UsagerGender, &v.AidantGiven, &v.AidantFamily); err != nil {
			return nil, fmt.Errorf("mandate: list: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	ids := make([]string, len(out))
	pos := map[string]int{}
	for i, v := range out {
		ids[i], pos[v.ID] = v.ID, i
	}
	query, qargs, err := sqlx.In(`SELECT `+demarcheColumns+` FROM mandate_demarches WHERE mandate_id IN (?)`, ids)
	if err != nil {
		return nil, err
	}
	var dem []MandateDemarche
	if err := sqlx.SelectContext(ctx, q, &dem, s.db.Rebind(query), qargs...); err != nil {
		return nil, fmt.Errorf("mandate: démarches: %w", err)
	}
	for _, d := range dem {
		out[pos[d.MandateID]].Demarches = append(out[pos[d.MandateID]].Demarches, d)
	}
	for i := range out {
		sort.Slice(out[i].Demarches, func(a, b int) bool {
			return catalogueIndex(out[i].Demarches[a].Code) < catalogueIndex(out[i].Demarches[b].Code)
		})
	}
	return out, nil
}

func catalogueIndex(code string) int {
	for i, d := range Demarches {
		if d.Code == code {
			return i
		}
	}
	return len(Demarches)
}

// Mandates lists the organisation's mandates, newest first, keeping only
// those of the given status ("" for all).
func (s *Service) Mandates(ctx context.Context, orgID, status string) ([]View, error) {
	all, err := s.views(ctx, s.db.R, `m.organisation_id = ? ORDER BY m.created_at DESC LIMIT 500`, orgID)
	if err != nil || status == "" {
		return all, err
	}
	now := s.now()
	out := all[:0]
	for _, v := range all {
		if v.Status(now) == status {
			out = append(out, v)
		}
	}
	return out, nil
}

// UsagerMandates lists a person's mandates, in every organisation.
func (s *Service) UsagerMandates(ctx context.Context, usagerID string) ([]View, error) {
	return s.views(ctx, s.db.R, `m.usager_id = ? ORDER BY m.created_at DESC`, usagerID)
}

// Get returns a mandate of the actor's organisation; another
// organisation's gives ErrOtherOrganisation (logged by the caller as
// access.denied), an unknown id ErrNotFound.
func (s *Service) Get(ctx context.Context, orgID, id string) (*View, error) {
	vs, err := s.views(ctx, s.db.R, `m.id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("mandate %s: %w", id, ErrNotFound)
	}
	if vs[0].OrganisationID != orgID {
		return nil, ErrOtherOrganisation
	}
	return &vs[0], nil
}

// GetForUsager returns a mandate of the person.
func (s *Service) GetForUsager(ctx context.Context, usagerID, id string) (*View, error) {
	vs, err := s.views(ctx, s.db.R, `m.id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("mandate %s: %w", id, ErrNotFound)
	}
	if vs[0].UsagerID != usagerID {
		return nil, ErrOtherOrganisation
	}
	return &vs[0], nil
}

// Revocation says who withdraws what, and why.
type Revocation struct {
	By audit.Actor // an aidant of the organisation, or the usager
	// OrganisationID (for an aidant) or UsagerID (for the person) is the
	// owner the mandate must belong to.
	OrganisationID string
	UsagerID       string
	MandateID      string
	Demarche       string // "" withdraws the whole mandate
	// Reason is a code of RevokeReasons (an aidant) or ReasonByPerson (the
	// person); Text, optional, is free text: kept erasable, the event
	// carries its hash.
	Reason string
	Text   string
}

// Revoke withdraws one démarche (mandate.demarche_revoked) or the whole
// mandate (mandate.revoked), at once: codes and tokens not yet redeemed
// stop working because every use checks ActiveFor in its transaction.
func (s *Service) Revoke(ctx context.Context, r Revocation) error {
	if err := r.check(); err != nil {
		return err
	}
	return s.log.Write(ctx, func(tx *audit.Tx) error { return RevokeIn(tx, r) })
}

func (r Revocation) check() error {
	if !validReason(r.By, r.Reason) {
		return ErrReason
	}
	if strings.TrimSpace(r.Text) != "" {
		if _, err := audit.CleanFreeText(r.Text); err != nil {
			return ErrReasonText
		}
	} else if r.Reason == ReasonOther {
		return ErrReasonText
	}
	return nil
}

// RevokeIn is Revoke inside a unit that does more (an objection that
// withdraws the mandate in the same step).
func RevokeIn(tx *audit.Tx, r Revocation) error {
	if err := r.check(); err != nil {
		return err
	}
	m, err := loadMandate(tx, r.MandateID)
	if err != nil {
		return err
	}
	if (r.OrganisationID != "" && m.OrganisationID != r.OrganisationID) || (r.UsagerID != "" && m.UsagerID != r.UsagerID) ||
		(r.OrganisationID == "" && r.UsagerID == "") {
		return ErrOtherOrganisation
	}
	now := tx.Now()
	switch m.Status(now) {
	case Revoked:
		return ErrRevoked
	case Expired:
		return ErrExpired
	}
	ts := store.T(now)
	ev := audit.Event{Actor: r.By, Organisation: m.OrganisationID, Usager: m.UsagerID, Mandate: m.ID, Reason: r.Reason}
	if r.By.Kind == audit.ActorAidant {
		ev.Aidant = r.By.ID
	}
	var text any // NULL, or the free text's hash
	if strings.TrimSpace(r.Text) != "" {
		hash, err := tx.FreeText(r.Text)
		if err != nil {
			return err
		}
		text, ev.Detail = hash, map[string]any{audit.FreeTextKey: hash}
	}
	if r.Demarche == "" {
		if _, err := tx.Exec(`UPDATE mandates SET revoked_at = ?, revoked_by_kind = ?, revoked_by = ?, revoke_reason = ?, revoke_text = ? WHERE id = ?`,
			ts, r.By.Kind, r.By.ID, r.Reason, text, m.ID); err != nil {
			return err
		}
		ev.Type, ev.Demarches = audit.MandateRevoked, m.ActiveDemarches()
		if _, err := tx.Exec(`UPDATE mandate_demarches SET revoked_at = ?, revoked_by_kind = ?, revoked_by = ?, revoke_reason = ?, revoke_text = ?
			WHERE mandate_id = ? AND revoked_at IS NULL`, ts, r.By.Kind, r.By.ID, r.Reason, text, m.ID); err != nil {
			return err
		}
	} else {
		if !m.Covers(r.Demarche, now) {
			return fmt.Errorf("démarche %q: %w", r.Demarche, ErrRevoked)
		}
		if _, err := tx.Exec(`UPDATE mandate_demarches SET revoked_at = ?, revoked_by_kind = ?, revoked_by = ?, revoke_reason = ?, revoke_text = ?
			WHERE mandate_id = ? AND demarche = ?`, ts, r.By.Kind, r.By.ID, r.Reason, text, m.ID, r.Demarche); err != nil {
			return err
		}
		ev.Type, ev.Demarches = audit.MandateDemarcheRevoked, []string{r.Demarche}
	}
	_, err = tx.Append(ev)
	return err
}

// loadMandate reads a mandate and its démarches inside a unit.
func loadMandate(tx *audit.Tx, id string) (*Mandate, error) {
	var m Mandate
	if err := tx.Get(&m, `SELECT `+mandateColumns+` FROM mandates WHERE id = ?`, id); err != nil {
		return nil, store.NotFound(err, "mandate "+id)
	}
	if err := tx.Select(&m.Demarches, `SELECT `+demarcheColumns+` FROM mandate_demarches WHERE mandate_id = ? ORDER BY demarche`, id); err != nil {
		return nil, err
	}
	return &m, nil
}

// ActiveFor checks, inside the unit that uses it (an authorization code
// issued or redeemed for a person), that the mandate is active and covers
// the démarche now: a revocation or an expiry bites at once, at every
// step, whatever was issued before.
func ActiveFor(tx *audit.Tx, mandateID, demarche string) (*Mandate, error) {
	m, err := loadMandate(tx, mandateID)
	if err != nil {
		return nil, err
	}
	switch m.Status(tx.Now()) {
	case Revoked:
		return nil, ErrRevoked
	case Expired:
		return nil, ErrExpired
	}
	if !m.Covers(demarche, tx.Now()) {
		return nil, fmt.Errorf("démarche %q: %w", demarche, ErrRevoked)
	}
	return m, nil
}

// Renewal proposes a new mandate to the same person for the démarches
// still in force, as a new draft needing new consent; allowed before
// expiry and up to a year after. A revoked mandate is not renewed: the
// person withdrew.
func (s *Service) Renew(ctx context.Context, a Actor, mandateID, duration, method string) (*Draft, string, error) {
	v, err := s.Get(ctx, a.OrganisationID, mandateID)
	if err != nil {
		return nil, "", err
	}
	now := s.now()
	if v.Status(now) == Revoked || now.After(v.ExpiresAt.AddDate(1, 0, 0)) {
		return nil, "", ErrNotRenewable
	}
	dem := v.ActiveDemarches()
	return s.CreateDraft(ctx, a, NewDraft{Demarches: dem, Duration: duration, Method: method, Renews: v.ID})
}

// ActiveInOrganisation lists the organisation's mandates that are active
// now, optionally only the persons whose name contains search.
func (s *Service) ActiveInOrganisation(ctx context.Context, orgID, search string) ([]View, error) {
	where := `m.organisation_id = ? AND m.revoked_at IS NULL AND m.expires_at > ?`
	args := []any{orgID, store.T(s.now())}
	if search = strings.TrimSpace(search); search != "" {
		where += ` AND LOWER(u.given_name || ' ' || u.family_name) LIKE ?`
		args = append(args, "%"+strings.ToLower(search)+"%")
	}
	vs, err := s.views(ctx, s.db.R, where+` ORDER BY u.family_name, u.given_name LIMIT 200`, args...)
	if err != nil {
		return nil, err
	}
	out := vs[:0]
	for _, v := range vs {
		if v.Status(s.now()) == Active {
			out = append(out, v)
		}
	}
	return out, nil
}

// CheckActive reads, outside any transaction, whether the mandate is
// active and covers démarche code now (for a token's use at userinfo).
func (s *Service) CheckActive(ctx context.Context, id, code string) error {
	vs, err := s.views(ctx, s.db.R, `m.id = ?`, id)
	if err != nil {
		return err
	}
	if len(vs) == 0 {
		return fmt.Errorf("mandate %s: %w", id, ErrNotFound)
	}
	switch vs[0].Status(s.now()) {
	case Revoked:
		return ErrRevoked
	case Expired:
		return ErrExpired
	}
	if !vs[0].Covers(code, s.now()) {
		return fmt.Errorf("démarche %q: %w", code, ErrRevoked)
	}
	return nil
}
