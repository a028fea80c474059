package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"aidants/audit"
	"aidants/auth"
	"aidants/mandate"
	"aidants/objection"
)

// The organisation's side of the person's objections (issue 15 item 3),
// and the aidant's declarations of error (item 4).

// objectionRow is an objection as the référent reads it.
type objectionRow struct {
	*objection.Objection
	Person, Aidant string
	Action         string
	ActionAt       time.Time
	Reason         string
}

type objectionsPage struct {
	Page
	Rows []objectionRow
}

type objectionAnswerPage struct {
	Page
	Row     objectionRow
	Answer  string
	Problem string
	Done    bool
}

// objectionRow reads what the référent sees of an objection.
func (s *Server) objectionRow(r *http.Request, o *objection.Objection) (objectionRow, error) {
	row := objectionRow{Objection: o, Reason: objection.ReasonLabel(o.Reason)}
	p := auth.PrincipalFrom(r.Context())
	if m, err := s.mandates.Get(r.Context(), p.OrganisationID, o.MandateID); err == nil {
		row.Person = m.UsagerGiven + " " + m.UsagerFamily
	} else if !errors.Is(err, mandate.ErrNotFound) {
		return row, err
	}
	e, err := s.log.At(r.Context(), o.Action, "")
	if err != nil {
		return row, err
	}
	n := s.namer(r.Context())
	row.Aidant, row.ActionAt = n.aidant(e.Event.Aidant), e.Event.Time.Time
	row.Action = "« " + n.service(e.Event.Service) + " », pour la démarche « " + labels(e.Event.Demarches) + " »"
	return row, n.err
}

// structureObjections lists the organisation's objections, the open ones
// first.
func (s *Server) structureObjections(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	os, err := s.objections.ForOrganisation(r.Context(), p.OrganisationID, 200)
	if err != nil {
		return err
	}
	page := &objectionsPage{Page: s.base(r)}
	for _, o := range os {
		row, err := s.objectionRow(r, o)
		if err != nil {
			return err
		}
		page.Rows = append(page.Rows, row)
	}
	s.render(w, r, http.StatusOK, "structure-objections", page)
	return nil
}

// structureObjection shows one objection and records what was done about
// it (objection.handled): the person reads the answer in their space.
func (s *Server) structureObjection(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	id := r.PathValue("id")
	o, err := s.objections.Get(r.Context(), p.OrganisationID, id)
	switch {
	case errors.Is(err, objection.ErrOtherOrg):
		return s.denied(r, "objection", id)
	case errors.Is(err, objection.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Msg: msgNotFound, Err: err}
	case err != nil:
		return err
	}
	page := &objectionAnswerPage{Page: s.base(r)}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		page.Answer = r.PostFormValue("reponse")
		err := s.objections.Handle(r.Context(), p.AidantID, p.OrganisationID, id, page.Answer)
		switch {
		case err == nil:
			if s.mailWake != nil {
				s.mailWake()
			}
			page.Done = true
			if o, err = s.objections.Get(r.Context(), p.OrganisationID, id); err != nil {
				return err
			}
		case errors.Is(err, objection.ErrText):
			page.Problem, status = "Écrivez ce qui a été fait (2 000 caractères au plus) : la personne lira cette réponse.", http.StatusBadRequest
		case errors.Is(err, objection.ErrHandled):
			page.Problem, status = "Une réponse a déjà été donnée : elle ne se modifie pas.", http.StatusBadRequest
		default:
			return err
		}
	}
	if page.Row, err = s.objectionRow(r, o); err != nil {
		return err
	}
	s.render(w, r, status, "structure-objection", page)
	return nil
}

type errorDeclarationPage struct {
	Page
	M            *mandate.View
	Index        int64
	Action       string
	ActionAt     time.Time
	Declarations []*objection.Declaration
	What, Fix    string
	Completes    string
	Problem      string
	Done         bool
}

// declareError is "J'ai fait une erreur": an aidant of the mandate's
// organisation declares an error on an action taken with it (and may
// complete an earlier declaration; none is edited or removed).
func (s *Server) declareError(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	id, raw := r.PathValue("id"), r.PathValue("index")
	m, err := s.mandates.Get(r.Context(), p.OrganisationID, id)
	if err != nil {
		return s.mandateError(r, "mandate", id, err)
	}
	idx, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || idx < 0 {
		return &Error{Status: http.StatusNotFound, Msg: msgNotFound}
	}
	e, err := s.log.At(r.Context(), idx, m.UsagerID)
	if errors.Is(err, audit.ErrOtherUsager) || (err == nil && (e.Event.Type != audit.MandateUsed || e.Event.Mandate != m.ID)) {
		return s.denied(r, "event", raw)
	}
	if err != nil {
		return s.mandateError(r, "event", raw, err)
	}
	_, decls, err := s.objections.ForMandate(r.Context(), m.ID)
	if err != nil {
		return err
	}
	n := s.namer(r.Context())
	page := &errorDeclarationPage{Page: s.base(r), M: m, Index: idx, ActionAt: e.Event.Time.Time, Declarations: decls[idx],
		Action: n.aidant(e.Event.Aidant) + " a ouvert « " + n.service(e.Event.Service) + " » pour la démarche « " + labels(e.Event.Demarches) + " »"}
	if n.err != nil {
		return n.err
	}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		page.What, page.Fix, page.Completes = r.PostFormValue("erreur"), r.PostFormValue("correction"), r.PostFormValue("complete")
		_, err := s.objections.Declare(r.Context(), actor(p), idx, page.What, page.Fix, page.Completes)
		switch {
		case err == nil:
			if s.mailWake != nil {
				s.mailWake()
			}
			http.Redirect(w, r, "/mandats/"+m.ID+"?fait=erreur#actions", http.StatusSeeOther)
			return nil
		case errors.Is(err, objection.ErrText):
			page.Problem, status = "Écrivez ce qui s'est mal passé et ce qui a été fait, ou va l'être, pour le corriger (2 000 caractères au plus chacun).", http.StatusBadRequest
		case errors.Is(err, objection.ErrDeclaredOn):
			page.Problem, status = "La déclaration à compléter n'est pas celle de cette démarche.", http.StatusBadRequest
		case errors.Is(err, objection.ErrOtherOrg):
			return s.denied(r, "event", raw)
		default:
			return err
		}
	}
	s.render(w, r, status, "mandat-erreur", page)
	return nil
}
