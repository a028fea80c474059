package mandate

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"aidants/audit"
	"aidants/keys"
	"aidants/store"
)

// Service runs the mandate lifecycle.
type Service struct {
	log     *audit.Log
	db      *store.DB
	keys    *keys.Manager
	issuer  string // the instance's public URL, iss of signed mandates
	linkTTL time.Duration
	now     func() time.Time
}

// Config configures the service.
type Config struct {
	Issuer         string
	ConsentLinkTTL time.Duration
	Now            func() time.Time
}

// New returns the mandate service.
func New(cfg Config, log *audit.Log, k *keys.Manager) *Service {
	if cfg.Now == nil {
		cfg.Now = log.Now // one clock for the service and its units
	}
	if cfg.ConsentLinkTTL <= 0 {
		cfg.ConsentLinkTTL = 48 * time.Hour
	}
	return &Service{log: log, db: log.DB(), keys: k, issuer: strings.TrimSuffix(cfg.Issuer, "/"), linkTTL: cfg.ConsentLinkTTL, now: cfg.Now}
}

// Usager is an assisted person, keyed by FranceConnect's (issuer, sub),
// with their pivot identity.
type Usager struct {
	ID           string     `db:"id"`
	Issuer       string     `db:"issuer"`
	Subject      string     `db:"subject"`
	GivenName    string     `db:"given_name"`
	FamilyName   string     `db:"family_name"`
	Birthdate    string     `db:"birthdate"`
	Gender       string     `db:"gender"`
	Birthplace   string     `db:"birthplace"`
	Birthcountry string     `db:"birthcountry"`
	Email        string     `db:"email"`
	CreatedAt    store.Time `db:"created_at"`
	UpdatedAt    store.Time `db:"updated_at"`
}

const usagerColumns = `id, issuer, subject, given_name, family_name, birthdate, gender, birthplace, birthcountry, COALESCE(email, '') AS email, created_at, updated_at`

// Evidence is a verified FranceConnect authentication of the person.
type Evidence struct {
	Issuer, Subject string
	// Nonce is the nonce the ID token carries (checked by the caller
	// against the request; checked here against the draft).
	Nonce string
	// Claims holds the pivot identity (given_name, family_name,
	// birthdate, gender, birthplace, birthcountry, email).
	Claims map[string]any
	// RawIDToken is kept as consent evidence, with the provider key that
	// verified it (JWK JSON): provider keys rotate.
	RawIDToken string
	JWK        string
}

func (e Evidence) claim(name string) string {
	v, _ := e.Claims[name].(string)
	return strings.TrimSpace(v)
}

// UpsertUsager creates or updates, inside a unit, the person with this
// FranceConnect identity, and returns their id.
func UpsertUsager(tx *audit.Tx, e Evidence) (string, error) {
	u := Usager{Issuer: e.Issuer, Subject: e.Subject, GivenName: e.claim("given_name"), FamilyName: e.claim("family_name"),
		Birthdate: e.claim("birthdate"), Gender: e.claim("gender"), Birthplace: e.claim("birthplace"),
		Birthcountry: e.claim("birthcountry"), Email: e.claim("email")}
	var missing []string
	for _, c := range []struct{ name, value string }{
		{"sub", u.Subject}, {"given_name", u.GivenName}, {"family_name", u.FamilyName}, {"birthdate", u.Birthdate},
	} {
		if c.value == "" {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		// The names only: the values are the person's.
		return "", fmt.Errorf("%w: missing %s", ErrIdentity, strings.Join(missing, ", "))
	}
	now := store.T(tx.Now())
	var email any
	if u.Email != "" {
		email = u.Email
	}
	var id string
	err := tx.Get(&id, `SELECT id FROM usagers WHERE issuer = ? AND subject = ?`, u.Issuer, u.Subject)
	if err == nil {
		_, err = tx.Exec(`UPDATE usagers SET given_name = ?, family_name = ?, birthdate = ?, gender = ?, birthplace = ?,
			birthcountry = ?, email = ?, updated_at = ? WHERE id = ?`, u.GivenName, u.FamilyName, u.Birthdate, u.Gender,
			u.Birthplace, u.Birthcountry, email, now, id)
		return id, err
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", err
	}
	id = store.NewID("usa")
	_, err = tx.Exec(`INSERT INTO usagers (id, issuer, subject, given_name, family_name, birthdate, gender, birthplace,
		birthcountry, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		id, u.Issuer, u.Subject, u.GivenName, u.FamilyName, u.Birthdate, u.Gender, u.Birthplace, u.Birthcountry, email, now, now)
	return id, err
}

// Usager returns a person.
func (s *Service) Usager(ctx context.Context, id string) (*Usager, error) {
	var u Usager
	err := s.db.R.GetContext(ctx, &u, s.db.Rebind(`SELECT `+usagerColumns+` FROM usagers WHERE id = ?`), id)
	if err != nil {
		return nil, store.NotFound(err, "usager")
	}
	return &u, nil
}

// Identify records the person's FranceConnect authentication for a draft
// (usager.identified): the nonce must be the draft's, the draft still
// waiting and not expired, and for a renewal the person must be the
// mandate's. For a remote draft, link is the consent link's token.
// It returns the person's id.
func (s *Service) Identify(ctx context.Context, draftID, link string, e Evidence) (string, error) {
	var usagerID string
	err := s.log.Write(ctx, func(tx *audit.Tx) error {
		d, err := loadDraft(tx, `id = ?`, draftID)
		if err != nil {
			return err
		}
		if err := checkWaiting(d, link, tx.Now()); err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(e.Nonce), []byte(d.Nonce())) != 1 {
			return ErrNonce
		}
		if d.Renews != "" {
			var who struct {
				Issuer  string `db:"issuer"`
				Subject string `db:"subject"`
			}
			if err := tx.Get(&who, `SELECT u.issuer, u.subject FROM mandates m JOIN usagers u ON u.id = m.usager_id WHERE m.id = ?`, d.Renews); err != nil {
				return store.NotFound(err, "renewed mandate")
			}
			if who.Issuer != e.Issuer || who.Subject != e.Subject {
				return ErrWrongPerson
			}
		}
		if usagerID, err = UpsertUsager(tx, e); err != nil {
			return err
		}
		now := store.T(tx.Now())
		if _, err := tx.Exec(`UPDATE mandate_drafts SET status = ?, usager_id = ?, evidence_token = ?, evidence_jwk = ?, identified_at = ?
			WHERE id = ?`, DraftIdentified, usagerID, e.RawIDToken, e.JWK, now, d.ID); err != nil {
			return err
		}
		_, err = tx.Append(audit.Event{Type: audit.UsagerIdentified, Actor: audit.Actor{Kind: audit.ActorUsager, ID: usagerID},
			Usager: usagerID, Organisation: d.OrganisationID, Demarches: d.Demarches,
			Detail: map[string]any{"draft": d.ID, "method": d.Method}})
		return err
	})
	return usagerID, err
}

// checkWaiting refuses a draft that is no longer waiting for the person.
func checkWaiting(d *Draft, link string, now time.Time) error {
	if d.Method == Remote {
		if link == "" || subtle.ConstantTimeCompare([]byte(store.Hash(link)), []byte(d.LinkHash)) != 1 {
			return ErrLinkUsed
		}
	}
	switch d.State(now) {
	case DraftPending, DraftIdentified:
		return nil
	case DraftExpired:
		return ErrDraftExpired
	default:
		if d.Method == Remote {
			return ErrLinkUsed
		}
		return ErrDraftState
	}
}

// ConfirmOnSite creates the mandate of an on-site draft once the person and
// the aidant have both confirmed (mandate.consent_given, mandate.created,
// and mandate.superseded / mandate.renewed when they apply).
func (s *Service) ConfirmOnSite(ctx context.Context, a Actor, draftID string, personAgrees, aidantConfirms bool) (*Mandate, error) {
	if !personAgrees || !aidantConfirms {
		return nil, ErrNotConfirmed
	}
	var m *Mandate
	err := s.log.Write(ctx, func(tx *audit.Tx) error {
		d, err := loadDraft(tx, `id = ?`, draftID)
		if err != nil {
			return err
		}
		if d.OrganisationID != a.OrganisationID {
			return ErrOtherOrganisation
		}
		if d.Method != OnSite {
			return ErrDraftState
		}
		if st := d.State(tx.Now()); st == DraftExpired {
			return ErrDraftExpired
		} else if st != DraftIdentified {
			return ErrDraftState
		}
		m, err = s.complete(tx, d, a.audit())
		return err
	})
	return m, err
}

// AcceptRemote records the person's acceptance through a consent link,
// which the person identified with (usagerID): the mandate is active from
// now on. The link can serve only once.
func (s *Service) AcceptRemote(ctx context.Context, link, usagerID string) (*Mandate, error) {
	var m *Mandate
	err := s.log.Write(ctx, func(tx *audit.Tx) error {
		d, err := loadDraftByLink(tx, link)
		if err != nil {
			return err
		}
		if err := checkWaiting(d, link, tx.Now()); err != nil {
			return err
		}
		if d.Status != DraftIdentified || d.UsagerID == "" || d.UsagerID != usagerID {
			return ErrDraftState
		}
		m, err = s.complete(tx, d, audit.Actor{Kind: audit.ActorUsager, ID: usagerID})
		return err
	})
	return m, err
}

// RefuseRemote records the person's refusal through a consent link
// (mandate.consent_refused). usagerID is empty when the person refuses
// before identifying.
func (s *Service) RefuseRemote(ctx context.Context, link, usagerID string) error {
	return s.log.Write(ctx, func(tx *audit.Tx) error {
		d, err := loadDraftByLink(tx, link)
		if err != nil {
			return err
		}
		if err := checkWaiting(d, link, tx.Now()); err != nil {
			return err
		}
		if d.UsagerID != usagerID {
			return ErrDraftState
		}
		if _, err := tx.Exec(`UPDATE mandate_drafts SET status = ?, decided_at = ? WHERE id = ?`, DraftRefused, store.T(tx.Now()), d.ID); err != nil {
			return err
		}
		actor := audit.Actor{Kind: audit.ActorUsager, ID: usagerID}
		if usagerID == "" {
			actor = audit.Actor{Kind: audit.ActorUsager, ID: "unidentified"}
		}
		_, err = tx.Append(audit.Event{Type: audit.MandateConsentRefused, Actor: actor, Usager: usagerID,
			Organisation: d.OrganisationID, Demarches: d.Demarches, Detail: map[string]any{"draft": d.ID}})
		return err
	})
}

func loadDraftByLink(tx *audit.Tx, link string) (*Draft, error) {
	if link == "" {
		return nil, fmt.Errorf("consent link: %w", ErrNotFound)
	}
	return loadDraft(tx, `link_hash = ?`, store.Hash(link))
}
