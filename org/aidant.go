package org

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"aidants/audit"
	"aidants/mandate"
	"aidants/store"
)

// NewAidant is what AddAidant needs.
type NewAidant struct {
	OrganisationID   string
	Email            string
	GivenName        string
	FamilyName       string
	HabilitatedUntil string // YYYY-MM-DD
	Referent         bool
	// Aidant gives the aidant role (create and use mandates); a référent
	// may be a manager only. AddAidant sets it when Referent is false.
	Aidant bool
}

// AddAidant adds an aidant to an organisation (aidant.created). An aidant
// who already exists (same email) gets a membership in one more
// organisation (aidant.updated). The aidant stays pending until their
// first sign-in through the aidants' identity provider with this email.
func (d *Directory) AddAidant(ctx context.Context, actor audit.Actor, n NewAidant) (*Aidant, error) {
	var errs []error
	email, err := checkEmail(n.Email)
	if err != nil {
		errs = append(errs, err)
	}
	given, family := strings.TrimSpace(n.GivenName), strings.TrimSpace(n.FamilyName)
	if given == "" || len(given) > 100 {
		errs = append(errs, invalid("given-name", "give a first name of 1 to 100 characters"))
	}
	if family == "" || len(family) > 100 {
		errs = append(errs, invalid("family-name", "give a family name of 1 to 100 characters"))
	}
	if err := checkDate("habilitated-until", n.HabilitatedUntil); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if !n.Referent {
		n.Aidant = true
	}
	var a Aidant
	err = d.log.Write(ctx, func(tx *audit.Tx) error {
		var orgActive bool
		if err := tx.Get(&orgActive, `SELECT active FROM organisations WHERE id = ?`, n.OrganisationID); err != nil {
			return store.NotFound(err, "organisation")
		}
		now := store.T(tx.Now())
		err := tx.Get(&a, `SELECT `+aidantColumns+` FROM aidants WHERE email = ?`, email)
		evType := audit.AidantUpdated
		switch {
		case isNoRows(err):
			a = Aidant{ID: store.NewID("aid"), Email: email, GivenName: given, FamilyName: family,
				HabilitatedUntil: n.HabilitatedUntil, Active: true, CreatedAt: now, UpdatedAt: now}
			if _, err := tx.Exec(`INSERT INTO aidants (id, email, given_name, family_name, habilitated_until, active, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, a.ID, a.Email, a.GivenName, a.FamilyName, a.HabilitatedUntil, a.Active, now, now); err != nil {
				return err
			}
			evType = audit.AidantCreated
		case err != nil:
			return err
		}
		_, err = tx.Exec(`INSERT INTO memberships (aidant_id, organisation_id, is_aidant, is_referent, active, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			a.ID, n.OrganisationID, n.Aidant, n.Referent, true, now)
		if store.IsConflict(err) {
			return fmt.Errorf("%s is already a member of this organisation: %w", email, ErrConflict)
		}
		if err != nil {
			return err
		}
		_, err = tx.Append(audit.Event{Type: evType, Actor: actor, Aidant: a.ID, Organisation: n.OrganisationID,
			Detail: map[string]any{"referent": n.Referent, "aidant_role": n.Aidant, "habilitated_until": a.HabilitatedUntil}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// AidantByEmail finds an aidant.
func (d *Directory) AidantByEmail(ctx context.Context, email string) (*Aidant, error) {
	var a Aidant
	err := d.db.R.GetContext(ctx, &a, d.db.Rebind(`SELECT `+aidantColumns+` FROM aidants WHERE email = ?`), strings.ToLower(strings.TrimSpace(email)))
	if err != nil {
		return nil, store.NotFound(err, "aidant "+email)
	}
	return &a, nil
}

// AidantByIssuerSubject finds an aidant by their identity-provider key.
func (d *Directory) AidantByIssuerSubject(ctx context.Context, issuer, subject string) (*Aidant, error) {
	var a Aidant
	err := d.db.R.GetContext(ctx, &a, d.db.Rebind(`SELECT `+aidantColumns+` FROM aidants WHERE issuer = ? AND subject = ?`), issuer, subject)
	if err != nil {
		return nil, store.NotFound(err, "aidant")
	}
	return &a, nil
}

// Aidant finds an aidant by id.
func (d *Directory) Aidant(ctx context.Context, id string) (*Aidant, error) {
	var a Aidant
	err := d.db.R.GetContext(ctx, &a, d.db.Rebind(`SELECT `+aidantColumns+` FROM aidants WHERE id = ?`), id)
	if err != nil {
		return nil, store.NotFound(err, "aidant "+id)
	}
	return &a, nil
}

// AidantRow is an aidant with one membership, for lists.
type AidantRow struct {
	Aidant
	Membership
}

// Aidants lists the aidants of an organisation, or of every organisation
// when orgID is empty.
func (d *Directory) Aidants(ctx context.Context, orgID string) ([]AidantRow, error) {
	q := `SELECT a.id, COALESCE(a.issuer, '') AS issuer, COALESCE(a.subject, '') AS subject, a.email, a.given_name, a.family_name,
		a.habilitated_until, a.active, a.created_at, a.updated_at, COALESCE(a.last_refusal, ''),
		m.aidant_id, m.organisation_id, m.is_aidant, m.is_referent, m.active,
		o.name AS org_name, o.siret AS org_siret, o.active AS org_active
		FROM aidants a JOIN memberships m ON m.aidant_id = a.id JOIN organisations o ON o.id = m.organisation_id`
	var args []any
	if orgID != "" {
		q += ` WHERE m.organisation_id = ?`
		args = append(args, orgID)
	}
	q += ` ORDER BY o.name, a.family_name, a.given_name, a.email`
	rows, err := d.db.R.QueryxContext(ctx, d.db.Rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("org: list aidants: %w", err)
	}
	defer rows.Close()
	var out []AidantRow
	for rows.Next() {
		var r AidantRow
		if err := rows.Scan(&r.ID, &r.Issuer, &r.Subject, &r.Email, &r.GivenName, &r.FamilyName, &r.HabilitatedUntil,
			&r.Aidant.Active, &r.CreatedAt, &r.UpdatedAt, &r.LastRefusal, &r.AidantID, &r.OrganisationID, &r.IsAidant, &r.IsReferent,
			&r.Membership.Active, &r.OrgName, &r.OrgSIRET, &r.OrgActive); err != nil {
			return nil, fmt.Errorf("org: list aidants: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Memberships lists an aidant's memberships with their organisations.
func (d *Directory) Memberships(ctx context.Context, aidantID string) ([]Membership, error) {
	var out []Membership
	err := d.db.R.SelectContext(ctx, &out, d.db.Rebind(`SELECT m.aidant_id, m.organisation_id, m.is_aidant, m.is_referent, m.active,
		o.name AS org_name, o.siret AS org_siret, o.active AS org_active
		FROM memberships m JOIN organisations o ON o.id = m.organisation_id
		WHERE m.aidant_id = ? ORDER BY o.name`), aidantID)
	return out, err
}

// SetAidantActive disables (aidant.disabled) or re-enables
// (aidant.updated) an aidant everywhere. A disabled aidant cannot sign in
// and their open sessions end at their next request. The reason, when
// given, is free text: kept erasable, the event carries its hash
// (audit.FreeTextKey).
func (d *Directory) SetAidantActive(ctx context.Context, actor audit.Actor, aidantID string, active bool, reason string) error {
	if reason != "" {
		if _, err := audit.CleanFreeText(reason); err != nil {
			return invalid("reason", "the reason must be text of at most 2,000 characters")
		}
	}
	return d.log.Write(ctx, func(tx *audit.Tx) error {
		var was bool
		if err := tx.Get(&was, `SELECT active FROM aidants WHERE id = ?`, aidantID); err != nil {
			return store.NotFound(err, "aidant")
		}
		if was == active {
			if active {
				return invalid("aidant", "this aidant is already enabled")
			}
			return invalid("aidant", "this aidant is already disabled")
		}
		if _, err := tx.Exec(`UPDATE aidants SET active = ?, updated_at = ? WHERE id = ?`, active, store.T(tx.Now()), aidantID); err != nil {
			return err
		}
		ev := audit.Event{Type: audit.AidantDisabled, Actor: actor, Aidant: aidantID}
		if active {
			ev.Type, ev.Detail = audit.AidantUpdated, map[string]any{"active": true}
		}
		if reason != "" {
			hash, err := tx.FreeText(reason)
			if err != nil {
				return err
			}
			if ev.Detail == nil {
				ev.Detail = map[string]any{}
			}
			ev.Detail[audit.FreeTextKey] = hash
		}
		_, err := tx.Append(ev)
		return err
	})
}

// Habilitate sets a new end date of habilitation
// (aidant.habilitation_renewed).
func (d *Directory) Habilitate(ctx context.Context, actor audit.Actor, aidantID, until string) error {
	if err := checkDate("until", until); err != nil {
		return err
	}
	return d.log.Write(ctx, func(tx *audit.Tx) error {
		res, err := tx.Exec(`UPDATE aidants SET habilitated_until = ?, updated_at = ? WHERE id = ?`, until, store.T(tx.Now()), aidantID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("aidant: %w", ErrNotFound)
		}
		_, err = tx.Append(audit.Event{Type: audit.AidantHabilitationRenewed, Actor: actor, Aidant: aidantID,
			Detail: map[string]any{"habilitated_until": until}})
		return err
	})
}

// Identity is what the aidants' identity provider says of a person who
// signs in.
type Identity struct {
	Issuer, Subject string
	Email           string
}

// Resolve finds the aidant of a sign-in, inside a writer transaction:
// by (issuer, subject), or else a pending aidant with this email, who is
// bound to (issuer, subject) in the same transaction. ErrNotFound when
// neither exists.
func Resolve(tx *audit.Tx, id Identity) (*Aidant, error) {
	var a Aidant
	err := tx.Get(&a, `SELECT `+aidantColumns+` FROM aidants WHERE issuer = ? AND subject = ?`, id.Issuer, id.Subject)
	if err == nil {
		return &a, nil
	}
	if !isNoRows(err) {
		return nil, err
	}
	email := strings.ToLower(strings.TrimSpace(id.Email))
	if email == "" {
		return nil, fmt.Errorf("aidant: %w", ErrNotFound)
	}
	err = tx.Get(&a, `SELECT `+aidantColumns+` FROM aidants WHERE email = ? AND subject IS NULL`, email)
	if isNoRows(err) {
		return nil, fmt.Errorf("aidant: %w", ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(`UPDATE aidants SET issuer = ?, subject = ?, updated_at = ? WHERE id = ?`,
		id.Issuer, id.Subject, store.T(tx.Now()), a.ID); err != nil {
		return nil, err
	}
	a.Issuer, a.Subject = id.Issuer, id.Subject
	return &a, nil
}

// UsableMemberships lists the memberships an aidant can work in now,
// inside a writer transaction.
func UsableMemberships(tx *audit.Tx, aidantID string) ([]Membership, error) {
	var ms []Membership
	err := tx.Select(&ms, `SELECT m.aidant_id, m.organisation_id, m.is_aidant, m.is_referent, m.active,
		o.name AS org_name, o.siret AS org_siret, o.active AS org_active
		FROM memberships m JOIN organisations o ON o.id = m.organisation_id
		WHERE m.aidant_id = ? AND m.active = ? AND o.active = ? ORDER BY o.name`, aidantID, true, true)
	if err != nil {
		return nil, err
	}
	out := ms[:0]
	for _, m := range ms {
		if m.Usable() {
			out = append(out, m)
		}
	}
	return out, nil
}

// BindIdentity sets the identity-provider key of an aidant
// (aidant.updated). Development mode uses it to keep its fictional
// identities matching the development provider, whose issuer follows the
// listening port.
func (d *Directory) BindIdentity(ctx context.Context, actor audit.Actor, aidantID, issuer, subject string) error {
	return d.log.Write(ctx, func(tx *audit.Tx) error {
		res, err := tx.Exec(`UPDATE aidants SET issuer = ?, subject = ?, updated_at = ? WHERE id = ?`, issuer, subject, store.T(tx.Now()), aidantID)
		if store.IsConflict(err) {
			return fmt.Errorf("another aidant has this identity: %w", ErrConflict)
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("aidant: %w", ErrNotFound)
		}
		_, err = tx.Append(audit.Event{Type: audit.AidantUpdated, Actor: actor, Aidant: aidantID, Detail: map[string]any{"identity": "bound"}})
		return err
	})
}

// SetMemberActive disables or re-enables an aidant in one organisation
// (aidant.disabled, or aidant.updated with active true): a référent acts
// on their own organisation only, and the aidant's other memberships are
// untouched. The aidant's open sessions in that organisation end at their
// next request.
//
// Disabling takes a reason: a code of DisableReasons, journaled, and free
// text (required for mandate.ReasonOther), kept erasable with only its
// hash in the event.
func (d *Directory) SetMemberActive(ctx context.Context, actor audit.Actor, orgID, aidantID string, active bool, reason, text string) error {
	if !active {
		if !slices.ContainsFunc(DisableReasons, func(r mandate.Reason) bool { return r.Code == reason }) {
			return invalid("reason", "choose a reason")
		}
		if strings.TrimSpace(text) == "" && reason == mandate.ReasonOther {
			return invalid("text", "say the reason")
		}
		if strings.TrimSpace(text) != "" {
			if _, err := audit.CleanFreeText(text); err != nil {
				return invalid("text", "the reason must be text of at most 2,000 characters")
			}
		}
	}
	return d.log.Write(ctx, func(tx *audit.Tx) error {
		var was bool
		if err := tx.Get(&was, `SELECT active FROM memberships WHERE aidant_id = ? AND organisation_id = ?`, aidantID, orgID); err != nil {
			return store.NotFound(err, "aidant")
		}
		if was == active {
			if active {
				return invalid("aidant", "this aidant is already enabled")
			}
			return invalid("aidant", "this aidant is already disabled")
		}
		if _, err := tx.Exec(`UPDATE memberships SET active = ? WHERE aidant_id = ? AND organisation_id = ?`, active, aidantID, orgID); err != nil {
			return err
		}
		ev := audit.Event{Type: audit.AidantDisabled, Actor: actor, Aidant: aidantID, Organisation: orgID, Reason: reason}
		if active {
			ev.Type, ev.Reason, ev.Detail = audit.AidantUpdated, "", map[string]any{"active": true}
		} else if strings.TrimSpace(text) != "" {
			hash, err := tx.FreeText(text)
			if err != nil {
				return err
			}
			ev.Detail = map[string]any{audit.FreeTextKey: hash}
		}
		_, err := tx.Append(ev)
		return err
	})
}

// DisableReasons are the reasons a référent chooses among to disable an
// aidant in their organisation.
var DisableReasons = []mandate.Reason{
	{Code: "depart", Label: "Cette personne a quitté la structure"},
	{Code: "habilitation", Label: "Cette personne n'est plus habilitée"},
	{Code: "absence", Label: "Absence de longue durée"},
	{Code: "erreur", Label: "Ajoutée par erreur"},
	{Code: mandate.ReasonOther, Label: "Une autre raison (précisez-la)"},
}
