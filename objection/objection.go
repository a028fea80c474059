// Package objection keeps what protects the person and the professional
// after the fact (issue 15): the person's objection to an action taken for
// them ("Ce n'était pas d'accord"), what the organisation's référent did
// about it, and the aidant's own declaration of an error on an action they
// took. Each is journaled (usager.objected, objection.handled,
// action.error_declared) with its free texts kept erasable (audit.FreeText)
// and only their hashes in the events and in these tables.
package objection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"aidants/audit"
	"aidants/mandate"
	"aidants/store"
)

// Errors.
var (
	ErrNotAction  = errors.New("objection: not an action taken for the person")
	ErrReason     = errors.New("objection: unknown reason")
	ErrText       = errors.New("objection: the text is missing or too long")
	ErrObjected   = errors.New("objection: this action was already objected to")
	ErrHandled    = errors.New("objection: already handled")
	ErrNotFound   = errors.New("objection: not found")
	ErrOtherOrg   = errors.New("objection: of another organisation")
	ErrDeclaredOn = errors.New("objection: the declaration to complete is not of this action")
)

// Reason is what the person says is wrong.
type Reason struct{ Code, Label string }

// ReasonOther needs a text.
const ReasonOther = "autre"

// Reasons are the choices of the objection form.
var Reasons = []Reason{
	{"pas_demande", "Je n'ai pas demandé cette démarche"},
	{"inconnu", "Je ne connais pas cette personne"},
	{"autre_demarche", "Ce n'était pas la démarche que j'avais demandée"},
	{ReasonOther, "Autre chose (dites-le ci-dessous)"},
}

// ReasonLabel is the French label of a reason code.
func ReasonLabel(code string) string {
	for _, r := range Reasons {
		if r.Code == code {
			if code == ReasonOther {
				return "Autre chose"
			}
			return r.Label
		}
	}
	return code
}

// Objection is the person's objection to one action.
type Objection struct {
	ID             string     `db:"id"`
	Action         int64      `db:"action_index"`
	UsagerID       string     `db:"usager_id"`
	OrganisationID string     `db:"organisation_id"`
	MandateID      string     `db:"mandate_id"`
	AidantID       string     `db:"aidant_id"`
	Reason         string     `db:"reason"`
	TextHash       *string    `db:"text_hash"`
	Withdrew       bool       `db:"withdrew"`
	CreatedAt      store.Time `db:"created_at"`
	HandledAt      store.Time `db:"handled_at"`
	HandledBy      *string    `db:"handled_by"`
	AnswerHash     *string    `db:"answer_hash"`

	// Read with the free texts (empty once erased).
	Text, Answer string
}

const objectionColumns = `id, action_index, usager_id, organisation_id, mandate_id, aidant_id, reason, text_hash, withdrew,
	created_at, handled_at, handled_by, answer_hash`

// Declaration is an aidant's declaration of an error on an action.
type Declaration struct {
	ID             string     `db:"id"`
	Action         int64      `db:"action_index"`
	UsagerID       string     `db:"usager_id"`
	OrganisationID string     `db:"organisation_id"`
	MandateID      string     `db:"mandate_id"`
	AidantID       string     `db:"aidant_id"`
	WhatHash       string     `db:"what_hash"`
	FixHash        string     `db:"fix_hash"`
	Completes      *string    `db:"completes"`
	CreatedAt      store.Time `db:"created_at"`

	What, Fix string
}

const declarationColumns = `id, action_index, usager_id, organisation_id, mandate_id, aidant_id, what_hash, fix_hash, completes, created_at`

// Service keeps objections and declarations.
type Service struct {
	log *audit.Log
	db  *store.DB
}

// New returns the service writing through log.
func New(log *audit.Log) *Service { return &Service{log: log, db: log.DB()} }

// action reads the mandate.used event at index; usagerID "" for any.
func (s *Service) action(ctx context.Context, index int64, usagerID string) (*audit.Event, error) {
	e, err := s.log.At(ctx, index, usagerID)
	if err != nil {
		return nil, err
	}
	if e.Event.Type != audit.MandateUsed {
		return nil, ErrNotAction
	}
	return &e.Event, nil
}

// Action returns the action at index if it was taken for usagerID: an
// index of another person's event gives audit.ErrOtherUsager (to journal),
// anything else that is not an action ErrNotAction or audit.ErrNotFound.
func (s *Service) Action(ctx context.Context, index int64, usagerID string) (*audit.Event, error) {
	return s.action(ctx, index, usagerID)
}

// Object records the person's objection to an action taken for them, and
// withdraws the mandate in the same unit when withdraw is set.
func (s *Service) Object(ctx context.Context, usagerID string, index int64, reason, text string, withdraw bool) (*Objection, error) {
	known := false
	for _, r := range Reasons {
		known = known || r.Code == reason
	}
	if !known {
		return nil, ErrReason
	}
	if text != "" {
		if _, err := audit.CleanFreeText(text); err != nil {
			return nil, ErrText
		}
	} else if reason == ReasonOther {
		return nil, ErrText
	}
	ev, err := s.action(ctx, index, usagerID)
	if err != nil {
		return nil, err
	}
	o := &Objection{ID: store.NewID("obj"), Action: index, UsagerID: usagerID, OrganisationID: ev.Organisation,
		MandateID: ev.Mandate, AidantID: ev.Aidant, Reason: reason, Withdrew: withdraw}
	err = s.log.Write(ctx, func(tx *audit.Tx) error {
		var n int
		if err := tx.Get(&n, `SELECT COUNT(*) FROM objections WHERE action_index = ?`, index); err != nil {
			return err
		}
		if n > 0 {
			return ErrObjected
		}
		o.CreatedAt = store.T(tx.Now())
		o.Withdrew = false
		if withdraw {
			// First, so that the objection says whether this step withdrew
			// the mandate: one already withdrawn, or ended, is not.
			err := mandate.RevokeIn(tx, mandate.Revocation{By: audit.Actor{Kind: audit.ActorUsager, ID: usagerID}, MandateID: o.MandateID,
				UsagerID: usagerID, Reason: mandate.ReasonByPerson})
			if err != nil && !errors.Is(err, mandate.ErrRevoked) && !errors.Is(err, mandate.ErrExpired) {
				return err
			}
			o.Withdrew = err == nil
		}
		detail := map[string]any{"action": index}
		if text != "" {
			h, err := tx.FreeText(text)
			if err != nil {
				return ErrText
			}
			o.TextHash, detail[audit.FreeTextKey] = &h, h
		}
		if o.Withdrew {
			detail["withdrew"] = true
		}
		if _, err := tx.Exec(`INSERT INTO objections (id, action_index, usager_id, organisation_id, mandate_id, aidant_id, reason, text_hash, withdrew, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, o.ID, index, usagerID, o.OrganisationID, o.MandateID, o.AidantID, reason, o.TextHash, o.Withdrew, o.CreatedAt); err != nil {
			return err
		}
		_, err := tx.Append(audit.Event{Type: audit.UsagerObjected, Actor: audit.Actor{Kind: audit.ActorUsager, ID: usagerID},
			Usager: usagerID, Organisation: o.OrganisationID, Mandate: o.MandateID, Aidant: o.AidantID, Service: ev.Service,
			Demarches: ev.Demarches, Reason: reason, Detail: detail})
		return err
	})
	if err != nil {
		return nil, err
	}
	o.Text = text
	return o, nil
}

// Handle records what the référent of the objection's organisation did
// about it; the answer is shown to the person.
func (s *Service) Handle(ctx context.Context, referentID, organisationID, id, answer string) error {
	if _, err := audit.CleanFreeText(answer); err != nil {
		return ErrText
	}
	return s.log.Write(ctx, func(tx *audit.Tx) error {
		var o Objection
		if err := tx.Get(&o, `SELECT `+objectionColumns+` FROM objections WHERE id = ?`, id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		if o.OrganisationID != organisationID {
			return ErrOtherOrg
		}
		if !o.HandledAt.IsZero() {
			return ErrHandled
		}
		h, err := tx.FreeText(answer)
		if err != nil {
			return ErrText
		}
		if _, err := tx.Exec(`UPDATE objections SET handled_at = ?, handled_by = ?, answer_hash = ? WHERE id = ?`,
			store.T(tx.Now()), referentID, h, id); err != nil {
			return err
		}
		_, err = tx.Append(audit.Event{Type: audit.ObjectionHandled, Actor: audit.Actor{Kind: audit.ActorAidant, ID: referentID},
			Aidant: o.AidantID, Usager: o.UsagerID, Organisation: o.OrganisationID, Mandate: o.MandateID,
			Detail: map[string]any{"action": o.Action, "objection": o.ID, audit.FreeTextKey: h}})
		return err
	})
}

// Declare records an aidant's declaration of an error on an action taken
// under their organisation's mandate; completes, when set, is the id of an
// earlier declaration on the same action that this one completes.
func (s *Service) Declare(ctx context.Context, by mandate.Actor, index int64, what, fix, completes string) (*Declaration, error) {
	if _, err := audit.CleanFreeText(what); err != nil {
		return nil, ErrText
	}
	if _, err := audit.CleanFreeText(fix); err != nil {
		return nil, ErrText
	}
	ev, err := s.action(ctx, index, "")
	if err != nil {
		return nil, err
	}
	if ev.Organisation != by.OrganisationID {
		return nil, ErrOtherOrg
	}
	d := &Declaration{ID: store.NewID("err"), Action: index, UsagerID: ev.Usager, OrganisationID: ev.Organisation,
		MandateID: ev.Mandate, AidantID: by.AidantID, What: what, Fix: fix}
	err = s.log.Write(ctx, func(tx *audit.Tx) error {
		detail := map[string]any{"action": index}
		if completes != "" {
			var on int64
			if err := tx.Get(&on, `SELECT action_index FROM error_declarations WHERE id = ?`, completes); err != nil || on != index {
				return ErrDeclaredOn
			}
			d.Completes, detail["completes"] = &completes, completes
		}
		var err error
		if d.WhatHash, err = tx.FreeText(what); err != nil {
			return ErrText
		}
		if d.FixHash, err = tx.FreeText(fix); err != nil {
			return ErrText
		}
		detail["what_sha256"], detail["fix_sha256"] = d.WhatHash, d.FixHash
		d.CreatedAt = store.T(tx.Now())
		if _, err := tx.Exec(`INSERT INTO error_declarations (id, action_index, usager_id, organisation_id, mandate_id, aidant_id, what_hash, fix_hash, completes, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.ID, index, d.UsagerID, d.OrganisationID, d.MandateID, d.AidantID, d.WhatHash, d.FixHash, d.Completes, d.CreatedAt); err != nil {
			return err
		}
		_, err = tx.Append(audit.Event{Type: audit.ActionErrorDeclared, Actor: audit.Actor{Kind: audit.ActorAidant, ID: by.AidantID},
			Aidant: by.AidantID, Usager: d.UsagerID, Organisation: d.OrganisationID, Mandate: d.MandateID, Service: ev.Service,
			Demarches: ev.Demarches, Detail: detail})
		return err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// ForUsager returns the person's objections and the declarations on the
// actions taken for them, by action index, with their texts.
func (s *Service) ForUsager(ctx context.Context, usagerID string) (map[int64]*Objection, map[int64][]*Declaration, error) {
	var os []*Objection
	if err := s.db.R.SelectContext(ctx, &os, s.db.Rebind(`SELECT `+objectionColumns+` FROM objections WHERE usager_id = ?`), usagerID); err != nil {
		return nil, nil, fmt.Errorf("objection: %w", err)
	}
	var ds []*Declaration
	if err := s.db.R.SelectContext(ctx, &ds, s.db.Rebind(`SELECT `+declarationColumns+` FROM error_declarations WHERE usager_id = ? ORDER BY created_at, id`), usagerID); err != nil {
		return nil, nil, fmt.Errorf("objection: %w", err)
	}
	return s.byAction(ctx, os, ds)
}

// ForMandate returns the declarations on the actions of a mandate, by
// action index.
func (s *Service) ForMandate(ctx context.Context, mandateID string) (map[int64]*Objection, map[int64][]*Declaration, error) {
	var os []*Objection
	if err := s.db.R.SelectContext(ctx, &os, s.db.Rebind(`SELECT `+objectionColumns+` FROM objections WHERE mandate_id = ?`), mandateID); err != nil {
		return nil, nil, fmt.Errorf("objection: %w", err)
	}
	var ds []*Declaration
	if err := s.db.R.SelectContext(ctx, &ds, s.db.Rebind(`SELECT `+declarationColumns+` FROM error_declarations WHERE mandate_id = ? ORDER BY created_at, id`), mandateID); err != nil {
		return nil, nil, fmt.Errorf("objection: %w", err)
	}
	return s.byAction(ctx, os, ds)
}

// ForOrganisation returns the organisation's objections, the open ones
// first, newest first.
func (s *Service) ForOrganisation(ctx context.Context, organisationID string, limit int) ([]*Objection, error) {
	var os []*Objection
	err := s.db.R.SelectContext(ctx, &os, s.db.Rebind(`SELECT `+objectionColumns+` FROM objections WHERE organisation_id = ?
		ORDER BY CASE WHEN handled_at IS NULL THEN 0 ELSE 1 END, created_at DESC LIMIT ?`), organisationID, limit)
	if err != nil {
		return nil, fmt.Errorf("objection: %w", err)
	}
	for _, o := range os {
		if err := s.texts(ctx, o); err != nil {
			return nil, err
		}
	}
	return os, nil
}

// Get returns one objection of the organisation.
func (s *Service) Get(ctx context.Context, organisationID, id string) (*Objection, error) {
	var o Objection
	err := s.db.R.GetContext(ctx, &o, s.db.Rebind(`SELECT `+objectionColumns+` FROM objections WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if o.OrganisationID != organisationID {
		return nil, ErrOtherOrg
	}
	return &o, s.texts(ctx, &o)
}

func (s *Service) byAction(ctx context.Context, os []*Objection, ds []*Declaration) (map[int64]*Objection, map[int64][]*Declaration, error) {
	objs := map[int64]*Objection{}
	for _, o := range os {
		if err := s.texts(ctx, o); err != nil {
			return nil, nil, err
		}
		objs[o.Action] = o
	}
	decls := map[int64][]*Declaration{}
	for _, d := range ds {
		var err error
		if d.What, err = textOf(ctx, s.db, d.WhatHash); err != nil {
			return nil, nil, err
		}
		if d.Fix, err = textOf(ctx, s.db, d.FixHash); err != nil {
			return nil, nil, err
		}
		decls[d.Action] = append(decls[d.Action], d)
	}
	return objs, decls, nil
}

func (s *Service) texts(ctx context.Context, o *Objection) error {
	var err error
	if o.TextHash != nil {
		if o.Text, err = textOf(ctx, s.db, *o.TextHash); err != nil {
			return err
		}
	}
	if o.AnswerHash != nil {
		if o.Answer, err = textOf(ctx, s.db, *o.AnswerHash); err != nil {
			return err
		}
	}
	return nil
}

// textOf reads a free text; an erased one reads as "".
func textOf(ctx context.Context, db *store.DB, hash string) (string, error) {
	t, err := audit.FreeTextOf(ctx, db, hash)
	if errors.Is(err, audit.ErrErased) {
		return "", nil
	}
	return t, err
}
