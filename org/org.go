// Package org owns the directory of the instance: organisations, aidants,
// their memberships (roles aidant and référent) and habilitations. The
// operator command line and the référent's space change it through
// Directory, which writes every change together with its audit event.
//
// An aidant is keyed by the identity provider's (issuer, subject), never by
// email: the email only matches the first sign-in of an aidant added by an
// operator or a référent, who then gets bound to that (issuer, subject).
package org

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"

	"aidants/audit"
	"aidants/mandate"
	"aidants/store"
)

// ErrNotFound is returned for an unknown organisation or aidant.
var ErrNotFound = store.ErrNotFound

// ErrConflict is returned when the organisation or aidant already exists.
var ErrConflict = store.ErrConflict

// InvalidError is a bad value given by a person; Msg is safe to show.
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Organisation is a structure whose aidants help people.
type Organisation struct {
	ID        string     `db:"id"`
	Name      string     `db:"name"`
	SIRET     string     `db:"siret"`
	Demarches store.List `db:"demarches"` // allowed démarches; empty = all
	Active    bool       `db:"active"`
	CreatedAt store.Time `db:"created_at"`
	UpdatedAt store.Time `db:"updated_at"`
}

// AllowedDemarches returns the codes this organisation may put in a
// mandate.
func (o *Organisation) AllowedDemarches() []string {
	if len(o.Demarches) == 0 {
		return mandate.Codes()
	}
	return o.Demarches
}

// Aidant is a habilitated helper.
type Aidant struct {
	ID               string     `db:"id"`
	Issuer           string     `db:"issuer"`
	Subject          string     `db:"subject"`
	Email            string     `db:"email"`
	GivenName        string     `db:"given_name"`
	FamilyName       string     `db:"family_name"`
	HabilitatedUntil string     `db:"habilitated_until"` // YYYY-MM-DD, inclusive
	Active           bool       `db:"active"`
	CreatedAt        store.Time `db:"created_at"`
	UpdatedAt        store.Time `db:"updated_at"`
	// LastRefusal is the reason of the aidant's last refused sign-in, when
	// none succeeded since (mfa_required: no second factor at the
	// provider): what the référent needs to know to help.
	LastRefusal string `db:"last_refusal"`
}

// Habilitated tells whether the habilitation covers the day of t in Paris.
func (a *Aidant) Habilitated(t time.Time) bool {
	return a.HabilitatedUntil >= t.In(mandate.Paris).Format(time.DateOnly)
}

// Pending tells whether the aidant has never signed in.
func (a *Aidant) Pending() bool { return a.Subject == "" }

// Membership is an aidant's place in an organisation.
type Membership struct {
	AidantID       string `db:"aidant_id"`
	OrganisationID string `db:"organisation_id"`
	IsAidant       bool   `db:"is_aidant"`
	IsReferent     bool   `db:"is_referent"`
	Active         bool   `db:"active"`
	// The organisation, joined.
	OrgName   string `db:"org_name"`
	OrgSIRET  string `db:"org_siret"`
	OrgActive bool   `db:"org_active"`
}

// Usable tells whether the membership lets the aidant work in it.
func (m *Membership) Usable() bool { return m.Active && m.OrgActive && (m.IsAidant || m.IsReferent) }

// Directory reads and changes organisations and aidants.
type Directory struct {
	log *audit.Log
	db  *store.DB
}

// New returns a directory writing through log.
func New(log *audit.Log) *Directory { return &Directory{log: log, db: log.DB()} }

const orgColumns = `id, name, siret, demarches, active, created_at, updated_at`

const aidantColumns = `id, COALESCE(issuer, '') AS issuer, COALESCE(subject, '') AS subject, email, given_name, family_name, habilitated_until, active, created_at, updated_at, COALESCE(last_refusal, '') AS last_refusal`

// Organisations lists every organisation, by name.
func (d *Directory) Organisations(ctx context.Context) ([]Organisation, error) {
	var out []Organisation
	err := d.db.R.SelectContext(ctx, &out, `SELECT `+orgColumns+` FROM organisations ORDER BY name, siret`)
	return out, err
}

// OrganisationBySIRET finds an organisation.
func (d *Directory) OrganisationBySIRET(ctx context.Context, siret string) (*Organisation, error) {
	var o Organisation
	err := d.db.R.GetContext(ctx, &o, d.db.Rebind(`SELECT `+orgColumns+` FROM organisations WHERE siret = ?`), siret)
	if err != nil {
		return nil, store.NotFound(err, "organisation "+siret)
	}
	return &o, nil
}

// Organisation finds an organisation by id.
func (d *Directory) Organisation(ctx context.Context, id string) (*Organisation, error) {
	var o Organisation
	err := d.db.R.GetContext(ctx, &o, d.db.Rebind(`SELECT `+orgColumns+` FROM organisations WHERE id = ?`), id)
	if err != nil {
		return nil, store.NotFound(err, "organisation "+id)
	}
	return &o, nil
}

// NewOrganisation is what AddOrganisation needs.
type NewOrganisation struct {
	Name      string
	SIRET     string
	Demarches []string // empty = all
}

// AddOrganisation creates an organisation (org.created).
func (d *Directory) AddOrganisation(ctx context.Context, actor audit.Actor, n NewOrganisation) (*Organisation, error) {
	name := strings.TrimSpace(n.Name)
	var errs []error
	if name == "" || len(name) > 200 {
		errs = append(errs, invalid("name", "give a name of 1 to 200 characters"))
	}
	if err := CheckSIRET(n.SIRET); err != nil {
		errs = append(errs, err)
	}
	dem, err := mandate.ParseDemarches(n.Demarches)
	if err != nil {
		errs = append(errs, invalid("demarches", "%v", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	o := &Organisation{ID: store.NewID("org"), Name: name, SIRET: n.SIRET, Demarches: dem, Active: true}
	err = d.log.Write(ctx, func(tx *audit.Tx) error {
		o.CreatedAt, o.UpdatedAt = store.T(tx.Now()), store.T(tx.Now())
		_, err := tx.Exec(`INSERT INTO organisations (`+orgColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			o.ID, o.Name, o.SIRET, o.Demarches, o.Active, o.CreatedAt, o.UpdatedAt)
		if store.IsConflict(err) {
			return fmt.Errorf("organisation with SIRET %s: %w", n.SIRET, ErrConflict)
		}
		if err != nil {
			return err
		}
		_, err = tx.Append(audit.Event{Type: audit.OrgCreated, Actor: actor, Organisation: o.ID, Demarches: dem})
		return err
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// OrganisationUpdate lists the fields to change; nil leaves a field as is.
type OrganisationUpdate struct {
	Name      *string
	Demarches *[]string // empty = all
	Active    *bool
}

// UpdateOrganisation changes an organisation (org.updated).
func (d *Directory) UpdateOrganisation(ctx context.Context, actor audit.Actor, id string, u OrganisationUpdate) (*Organisation, error) {
	var o Organisation
	err := d.log.Write(ctx, func(tx *audit.Tx) error {
		if err := tx.Get(&o, `SELECT `+orgColumns+` FROM organisations WHERE id = ?`, id); err != nil {
			return store.NotFound(err, "organisation "+id)
		}
		var changed []string
		if u.Name != nil {
			name := strings.TrimSpace(*u.Name)
			if name == "" || len(name) > 200 {
				return invalid("name", "give a name of 1 to 200 characters")
			}
			o.Name = name
			changed = append(changed, "name")
		}
		if u.Demarches != nil {
			dem, err := mandate.ParseDemarches(*u.Demarches)
			if err != nil {
				return invalid("demarches", "%v", err)
			}
			o.Demarches = dem
			changed = append(changed, "demarches")
		}
		if u.Active != nil {
			o.Active = *u.Active
			changed = append(changed, "active")
		}
		if len(changed) == 0 {
			return invalid("update", "nothing to change")
		}
		o.UpdatedAt = store.T(tx.Now())
		if _, err := tx.Exec(`UPDATE organisations SET name = ?, demarches = ?, active = ?, updated_at = ? WHERE id = ?`,
			o.Name, o.Demarches, o.Active, o.UpdatedAt, o.ID); err != nil {
			return err
		}
		_, err := tx.Append(audit.Event{Type: audit.OrgUpdated, Actor: actor, Organisation: o.ID, Demarches: o.Demarches,
			Detail: map[string]any{"changed": changed, "active": o.Active}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// CheckSIRET checks the 14 digits and the Luhn key of a SIRET (La Poste's
// establishments, SIREN 356000000, use a digit sum multiple of 5 instead).
func CheckSIRET(s string) error {
	if len(s) != 14 {
		return invalid("siret", "a SIRET has 14 digits")
	}
	sum, digits := 0, 0
	for i, r := range s {
		if !unicode.IsDigit(r) || r > '9' {
			return invalid("siret", "a SIRET has 14 digits")
		}
		v := int(r - '0')
		digits += v
		if i%2 == 0 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	if strings.HasPrefix(s, "356000000") {
		if digits%5 == 0 {
			return nil
		}
	} else if sum%10 == 0 {
		return nil
	}
	return invalid("siret", "%s is not a valid SIRET (check digit)", s)
}

func checkEmail(e string) (string, error) {
	e = strings.ToLower(strings.TrimSpace(e))
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || !strings.Contains(e, "@") {
		return "", invalid("email", "%q is not an email address", e)
	}
	return e, nil
}

func checkDate(field, s string) error {
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		return invalid(field, "give a date as YYYY-MM-DD")
	}
	return nil
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
