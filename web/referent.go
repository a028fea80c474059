package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"aidants/audit"
	"aidants/auth"
	"aidants/mandate"
	"aidants/org"
	"aidants/store"
)

// The référent's space (SPEC §8.2): the current organisation's aidants,
// its démarches, its mandates and its journal. Everything acts on the
// current organisation of the référent's session, never on an id taken
// from the request alone.

var msgNotReferent = message{"Réservé aux référents", "Cette page est réservée aux référents de la structure. Demandez à votre référent si vous avez besoin d'un changement."}

// referentOnly lets through the référents of the current organisation.
func (s *Server) referentOnly(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return s.aidantOnly(func(w http.ResponseWriter, r *http.Request) error {
		if p := auth.PrincipalFrom(r.Context()); !p.IsReferent {
			return &Error{Status: http.StatusForbidden, Msg: msgNotReferent, Err: errors.New("not a référent")}
		}
		return h(w, r)
	})
}

type structurePage struct {
	Page
	Org       *org.Organisation
	Aidants   []org.AidantRow
	Demarches []demarcheChoice
	Today     string
	Problem   string
	Form      url.Values
}

var structureNotices = map[string]string{
	"ajoute":    "L'aidant a été ajouté. Il pourra se connecter avec cette adresse dès que l'opérateur du service aura enregistré son habilitation.",
	"desactive": "L'aidant a été désactivé dans votre structure : ses sessions ouvertes prennent fin. Vous pouvez le réactiver à tout moment.",
	"reactive":  "L'aidant a été réactivé dans votre structure.",
	"demarches": "Les démarches de la structure ont été enregistrées.",
	"inchange":  "Rien n'a changé : c'était déjà le cas.",
}

func (s *Server) structure(w http.ResponseWriter, r *http.Request) error {
	return s.renderStructure(w, r, http.StatusOK, "", nil)
}

func (s *Server) renderStructure(w http.ResponseWriter, r *http.Request, status int, problem string, form url.Values) error {
	p := auth.PrincipalFrom(r.Context())
	o, err := s.dir.Organisation(r.Context(), p.OrganisationID)
	if err != nil {
		return err
	}
	rows, err := s.dir.Aidants(r.Context(), p.OrganisationID)
	if err != nil {
		return err
	}
	page := &structurePage{Page: s.base(r), Org: o, Aidants: rows, Today: s.now().In(mandate.Paris).Format(time.DateOnly),
		Problem: problem, Form: form}
	page.Flash = structureNotices[r.URL.Query().Get("fait")]
	for _, c := range mandate.Demarches {
		page.Demarches = append(page.Demarches, demarcheChoice{Code: c.Code, Label: c.Label,
			Checked: len(o.Demarches) == 0 || slices.Contains(o.Demarches, c.Code)})
	}
	s.render(w, r, status, "structure", page)
	return nil
}

// structureAddAidant adds an aidant to the current organisation by email;
// they stay pending until their first sign-in.
func (s *Server) structureAddAidant(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	if err := r.ParseForm(); err != nil {
		return badRequest("Le formulaire est illisible.")
	}
	f := r.PostForm
	// Habilitations are the operator's (SPEC §2): the new aidant waits for
	// one, and cannot sign in before.
	n := org.NewAidant{OrganisationID: p.OrganisationID, Email: f.Get("email"), GivenName: f.Get("prenom"), FamilyName: f.Get("nom"),
		HabilitatedUntil: s.now().In(mandate.Paris).AddDate(0, 0, -1).Format(time.DateOnly),
		Referent:         f.Get("referent") == "oui", Aidant: f.Get("aidant") == "oui"}
	if !n.Referent && !n.Aidant {
		return s.renderStructure(w, r, http.StatusBadRequest, "Choisissez au moins un rôle : aidant, référent, ou les deux.", f)
	}
	// A référent adds new people only: an existing aidant (of this or
	// another organisation) is the operator's to attach, so that nothing
	// of another organisation shows here.
	if _, err := s.dir.AidantByEmail(r.Context(), n.Email); err == nil {
		return s.renderStructure(w, r, http.StatusBadRequest,
			"Cette adresse ne peut pas être ajoutée depuis cette page. Si la personne est déjà aidante ailleurs, demandez à l'opérateur de l'ajouter à votre structure.", f)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if _, err := s.dir.AddAidant(r.Context(), p.Actor(), n); err != nil {
		var inv *org.InvalidError
		if errors.As(err, &inv) {
			return s.renderStructure(w, r, http.StatusBadRequest, frenchInvalid(err), f)
		}
		return err
	}
	http.Redirect(w, r, "/structure?fait=ajoute", http.StatusSeeOther)
	return nil
}

// frenchInvalid says in French what was wrong in an aidant's form.
func frenchInvalid(err error) string {
	var msgs []string
	for _, e := range unjoin(err) {
		var inv *org.InvalidError
		if !errors.As(e, &inv) {
			continue
		}
		switch inv.Field {
		case "email":
			if strings.Contains(inv.Msg, "already") {
				msgs = append(msgs, "Cet aidant fait déjà partie de la structure.")
			} else {
				msgs = append(msgs, "L'adresse électronique n'est pas valide.")
			}
		case "given-name":
			msgs = append(msgs, "Indiquez le prénom (100 caractères au plus).")
		case "family-name":
			msgs = append(msgs, "Indiquez le nom (100 caractères au plus).")
		case "habilitated-until":
			msgs = append(msgs, "La date de fin d'habilitation doit être une date à venir.")
		default:
			msgs = append(msgs, "Une valeur du formulaire n'est pas valide.")
		}
	}
	if len(msgs) == 0 {
		return "Une valeur du formulaire n'est pas valide."
	}
	return strings.Join(msgs, " ")
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

type disablePage struct {
	Page
	Row     org.AidantRow
	Reasons []mandate.Reason
	Form    url.Values
	Problem string
}

// structureDisableConfirm asks the référent to confirm disabling an
// aidant of their organisation, with a reason.
func (s *Server) structureDisableConfirm(w http.ResponseWriter, r *http.Request) error {
	return s.renderDisable(w, r, http.StatusOK, url.Values{}, "")
}

func (s *Server) renderDisable(w http.ResponseWriter, r *http.Request, status int, form url.Values, problem string) error {
	p := auth.PrincipalFrom(r.Context())
	id := r.PathValue("id")
	rows, err := s.dir.Aidants(r.Context(), p.OrganisationID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(rows, func(row org.AidantRow) bool { return row.Aidant.ID == id })
	if i < 0 || id == p.AidantID {
		return s.denied(r, "aidant", id)
	}
	if !rows[i].Membership.Active {
		http.Redirect(w, r, "/structure?fait=inchange", http.StatusSeeOther)
		return nil
	}
	s.render(w, r, status, "structure-desactivation", &disablePage{Page: s.base(r), Row: rows[i], Reasons: org.DisableReasons,
		Form: form, Problem: problem})
	return nil
}

// structureSetActive disables or re-enables an aidant of the current
// organisation; an aidant of another organisation is answered like an
// unknown one, and the attempt is journaled.
func (s *Server) structureSetActive(active bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := auth.PrincipalFrom(r.Context())
		id := r.PathValue("id")
		if err := r.ParseForm(); err != nil {
			return badRequest("Le formulaire est illisible.")
		}
		err := s.dir.SetMemberActive(r.Context(), p.Actor(), p.OrganisationID, id, active, r.PostFormValue("motif"), r.PostFormValue("precision"))
		var inv *org.InvalidError
		switch {
		case errors.Is(err, store.ErrNotFound):
			return s.denied(r, "aidant", id)
		case errors.As(err, &inv) && (inv.Field == "reason" || inv.Field == "text"):
			return s.renderDisable(w, r, http.StatusBadRequest, r.PostForm,
				"Choisissez la raison. Pour « une autre raison », précisez-la (2 000 caractères au plus).")
		case errors.As(err, &inv):
			http.Redirect(w, r, "/structure?fait=inchange", http.StatusSeeOther)
			return nil
		case err != nil:
			return err
		}
		done := "reactive"
		if !active {
			done = "desactive"
		}
		http.Redirect(w, r, "/structure?fait="+done, http.StatusSeeOther)
		return nil
	}
}

// structureDemarches restricts the démarches of the current organisation.
func (s *Server) structureDemarches(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	if err := r.ParseForm(); err != nil {
		return badRequest("Le formulaire est illisible.")
	}
	codes, err := mandate.ParseDemarches(r.PostForm["demarches"])
	if err != nil {
		return badRequest("Une démarche choisie n'existe pas.")
	}
	if len(codes) == 0 {
		return s.renderStructure(w, r, http.StatusBadRequest, "Choisissez au moins une démarche.", nil)
	}
	if len(codes) == len(mandate.Demarches) {
		codes = []string{} // all
	}
	if _, err := s.dir.UpdateOrganisation(r.Context(), p.Actor(), p.OrganisationID, org.OrganisationUpdate{Demarches: &codes}); err != nil {
		return err
	}
	http.Redirect(w, r, "/structure?fait=demarches", http.StatusSeeOther)
	return nil
}

// journalFilter reads the journal's filters; the organisation is always
// the référent's current one.
func (s *Server) journalFilter(r *http.Request, p *auth.Principal) (audit.Filter, error) {
	q := r.URL.Query()
	f := audit.Filter{Organisation: p.OrganisationID, Aidant: q.Get("aidant"), Usager: q.Get("usager"), Type: q.Get("type"), Newest: true}
	if d := q.Get("demarche"); d != "" {
		if _, err := mandate.ParseDemarches([]string{d}); err != nil {
			return f, badRequest("Cette démarche n'existe pas.")
		}
		f.Demarche = d
	}
	if t := q.Get("type"); t != "" && eventLabels[t] == "" {
		return f, badRequest("Ce type d'événement n'existe pas.")
	}
	for _, d := range []struct {
		name string
		into *time.Time
		end  bool
	}{{"du", &f.From, false}, {"au", &f.To, true}} {
		v := q.Get(d.name)
		if v == "" {
			continue
		}
		t, err := time.ParseInLocation(time.DateOnly, v, mandate.Paris)
		if err != nil {
			return f, badRequest("Une date n'est pas valide (format attendu : AAAA-MM-JJ).")
		}
		if d.end {
			t = t.AddDate(0, 0, 1)
		}
		*d.into = t
	}
	return f, nil
}

type journalLine struct {
	Index     int64
	When      time.Time
	Label     string
	Aidant    string
	Usager    string
	Demarches []string
	Mandate   string
}

type person struct{ ID, Name string }

type structureJournalPage struct {
	Page
	Lines   []journalLine
	Aidants []org.AidantRow
	Persons []person // with a mandate of the organisation
	Catalog []mandate.Demarche
	Types   []string
	Labels  map[string]string
	Query   url.Values
	Older   string // the next page, "" at the end
	CSV     string // the export of what is shown
}

const journalPageSize = 50

func (s *Server) structureJournal(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	f, err := s.journalFilter(r, p)
	if err != nil {
		return err
	}
	before := int64(-1)
	if v := r.URL.Query().Get("avant"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before < 0 {
			return badRequest("La page demandée n'existe pas.")
		}
	}
	names, err := s.names(r, p.OrganisationID)
	if err != nil {
		return err
	}
	page := &structureJournalPage{Page: s.base(r), Labels: eventLabels, Query: r.URL.Query(), Catalog: mandate.Demarches}
	if page.Aidants, err = s.dir.Aidants(r.Context(), p.OrganisationID); err != nil {
		return err
	}
	for t := range eventLabels {
		page.Types = append(page.Types, t)
	}
	for id, name := range names.usagers {
		page.Persons = append(page.Persons, person{id, name})
	}
	slices.SortFunc(page.Persons, func(a, b person) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(page.Types)
	err = s.log.Query(r.Context(), f, before, journalPageSize, func(e audit.Entry) error {
		page.Lines = append(page.Lines, names.line(e))
		return nil
	})
	if err != nil {
		return err
	}
	q := r.URL.Query()
	q.Del("avant")
	page.CSV = "/structure/journal.csv?" + q.Encode()
	if len(page.Lines) == journalPageSize {
		q.Set("avant", strconv.FormatInt(page.Lines[len(page.Lines)-1].Index, 10))
		page.Older = "/structure/journal?" + q.Encode()
	}
	s.render(w, r, http.StatusOK, "structure-journal", page)
	return nil
}

// exportChunk is how many events an export reads before it is journaled.
const exportChunk = 500

// structureJournalCSV exports the filtered journal (audit.exported). The
// export is journaled once its first events are read and before any is
// sent: a journal that cannot be read is exported, and journaled, as
// nothing.
func (s *Server) structureJournalCSV(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	f, err := s.journalFilter(r, p)
	if err != nil {
		return err
	}
	names, err := s.names(r, p.OrganisationID)
	if err != nil {
		return err
	}
	f.Newest = false
	first := make([]audit.Entry, 0, exportChunk)
	if err := s.log.Query(r.Context(), f, -1, exportChunk, func(e audit.Entry) error { first = append(first, e); return nil }); err != nil {
		return err
	}
	detail := map[string]any{"format": "csv", "scope": "organisation"}
	for _, k := range []string{"aidant", "usager", "demarche", "type", "du", "au"} { // validated or ids; nothing else
		if v := r.URL.Query().Get(k); v != "" && len(v) <= 64 {
			detail[k] = v
		}
	}
	if err := s.log.Write(r.Context(), func(tx *audit.Tx) error {
		_, err := tx.Append(audit.Event{Type: audit.AuditExported, Actor: p.Actor(), Aidant: p.AidantID, Organisation: p.OrganisationID, Detail: detail})
		return err
	}); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="journal-structure.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := frenchCSV(w)
	cw.Write([]string{"N° au journal", "Date et heure (Paris)", "Événement", "Aidant", "Personne", "Démarches", "Mandat n°", "Code de l'événement"})
	write := func(e audit.Entry) error {
		l := names.line(e)
		var dem []string
		for _, d := range l.Demarches {
			dem = append(dem, mandate.Label(d))
		}
		ref := ""
		if l.Mandate != "" {
			ref = mandate.Ref(l.Mandate)
		}
		cw.Write(csvSafe([]string{strconv.FormatInt(l.Index, 10), l.When.In(mandate.Paris).Format("02/01/2006 15:04:05"), l.Label,
			l.Aidant, l.Usager, strings.Join(dem, ", "), ref, e.Event.Type}))
		return cw.Error()
	}
	for _, e := range first {
		if err := write(e); err != nil {
			return err
		}
	}
	if len(first) == exportChunk {
		err = s.log.Query(r.Context(), f, first[len(first)-1].Index, 0, write)
	}
	cw.Flush()
	return err
}

// nameBook names the aidants and persons of an organisation's journal.
type nameBook struct{ aidants, usagers map[string]string }

func (s *Server) names(r *http.Request, orgID string) (*nameBook, error) {
	b := &nameBook{aidants: map[string]string{}, usagers: map[string]string{}}
	rows, err := s.dir.Aidants(r.Context(), orgID)
	if err != nil {
		return nil, err
	}
	for _, a := range rows {
		b.aidants[a.Aidant.ID] = a.GivenName + " " + a.FamilyName
	}
	ms, err := s.mandates.Mandates(r.Context(), orgID, "")
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		b.usagers[m.UsagerID] = m.UsagerGiven + " " + m.UsagerFamily
	}
	return b, nil
}

func (b *nameBook) line(e audit.Entry) journalLine {
	ev := e.Event
	l := journalLine{Index: e.Index, When: ev.Time.Time, Label: eventLabels[ev.Type], Demarches: ev.Demarches, Mandate: ev.Mandate}
	if l.Label == "" {
		l.Label = ev.Type
	}
	if ev.Type == audit.AuditExported && ev.Detail["scope"] == "statistics" {
		l.Label = "Statistiques exportées"
	}
	if ev.Aidant != "" {
		l.Aidant = b.aidants[ev.Aidant]
		if l.Aidant == "" {
			l.Aidant = ev.Aidant
		}
	}
	if ev.Usager != "" {
		l.Usager = b.usagers[ev.Usager]
		if l.Usager == "" {
			l.Usager = ev.Usager
		}
	}
	return l
}

// eventLabels says each event type in French.
var eventLabels = map[string]string{
	audit.AidantLogin: "Connexion d'un aidant", audit.AidantLoginRefused: "Connexion refusée", audit.AidantLogout: "Déconnexion",
	audit.AidantOrganisationSwitch: "Changement de structure", audit.AidantStepUp: "Nouvelle authentification",
	audit.UsagerIdentified: "Personne identifiée (FranceConnect)", audit.MandateDraftCreated: "Mandat préparé",
	audit.MandateConsentLinkCreated: "Lien de consentement créé", audit.MandateConsentLinkSent: "Lien de consentement envoyé par courriel",
	audit.UsagerObjected: "Signalement de la personne (ce n'était pas d'accord)", audit.ObjectionHandled: "Réponse à un signalement",
	audit.ActionErrorDeclared: "Erreur déclarée par l'aidant", audit.UsagerNotificationsChanged: "Courriels de la personne modifiés",
	audit.MandateConsentGiven:   "Accord de la personne",
	audit.MandateConsentRefused: "Refus de la personne", audit.MandateCreated: "Mandat signé", audit.MandateRenewed: "Mandat renouvelé",
	audit.MandateDemarcheRevoked: "Démarche retirée d'un mandat", audit.MandateRevoked: "Mandat retiré",
	audit.MandateSuperseded: "Mandat remplacé", audit.MandateUsed: "Démarche faite pour une personne",
	audit.TokenIssued: "Identité transmise au service", audit.AccessDenied: "Accès refusé", audit.AuditQueried: "Journal consulté",
	audit.AuditExported: "Journal exporté", audit.OrgCreated: "Structure créée", audit.OrgUpdated: "Structure modifiée",
	audit.AidantCreated: "Aidant ajouté", audit.AidantUpdated: "Aidant modifié ou réactivé", audit.AidantDisabled: "Aidant désactivé",
	audit.AidantHabilitationRenewed: "Habilitation prolongée", audit.ServiceRegistered: "Service en ligne enregistré",
	audit.ServiceUpdated: "Service en ligne modifié", audit.AuditorRegistered: "Administration de contrôle enregistrée",
	audit.KeysRotated: "Clés de signature renouvelées", audit.AuditOriginStarted: "Nouvelle origine du journal",
	audit.AbuseThrottled: "Demandes trop nombreuses freinées", audit.TextErased: "Texte libre effacé",
}

type structuresPage struct {
	Page
	Memberships []org.Membership
}

// structures lets an aidant of several organisations choose the current
// one.
func (s *Server) structures(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	ms, err := s.auth.Organisations(r.Context(), p.AidantID)
	if err != nil {
		return err
	}
	if len(ms) <= 1 && r.URL.Query().Get("apres") == "connexion" {
		http.Redirect(w, r, "/tableau-de-bord", http.StatusSeeOther)
		return nil
	}
	s.render(w, r, http.StatusOK, "structures", &structuresPage{Page: s.base(r), Memberships: ms})
	return nil
}

func (s *Server) structuresChoose(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	id := r.PostFormValue("organisation")
	err := s.auth.SwitchOrganisation(r.Context(), p, id)
	if errors.Is(err, auth.ErrNotMember) {
		return s.denied(r, "organisation", id)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/tableau-de-bord", http.StatusSeeOther)
	return nil
}
