package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"aidants/audit"
	"aidants/auth"
	"aidants/mandate"
	"aidants/notify"
	"aidants/objection"
	"aidants/org"
)

// historyPage is how many events the person's page shows at once.
const historyPage = 20

// usagerOnly serves the person's own space; without a session it shows
// the page to sign in with FranceConnect.
func (s *Server) usagerOnly(h func(http.ResponseWriter, *http.Request, *auth.Usager) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		u, err := s.auth.Usager(w, r)
		var ended *auth.SessionEndedError
		switch {
		case err == nil:
			return h(w, r.WithContext(auth.WithUsager(r.Context(), u)), u)
		case errors.Is(err, auth.ErrNoSession), errors.As(err, &ended):
			if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/mon-espace") {
				http.Redirect(w, r, "/mon-espace", http.StatusSeeOther)
				return nil
			}
			// After FranceConnect, back to the page asked for (the
			// objection link of an email, say).
			p := &spaceLoginPage{Page: s.base(r), Ended: ended != nil, Return: r.URL.Path}
			s.render(w, r, http.StatusOK, "mon-espace-connexion", p)
			return nil
		default:
			return err
		}
	}
}

type spaceLoginPage struct {
	Page
	Ended  bool
	Return string // the page of the space asked for
}

func (s *Server) usagerLogin(w http.ResponseWriter, r *http.Request) error {
	target, err := s.auth.BeginUsagerLogin(w, r, r.PostFormValue("retour"))
	if err != nil {
		return err
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

// usagerCallback opens the person's space after FranceConnect.
func (s *Server) usagerCallback(w http.ResponseWriter, r *http.Request, a *auth.Answer) error {
	err := s.auth.FinishUsager(w, r, a)
	if errors.Is(err, auth.ErrUnknownUsager) {
		s.render(w, r, http.StatusOK, "refus", &refusalPage{Page: s.base(r), Heading: "Aucun mandat à votre nom",
			Message: "Aucune structure n'a enregistré de mandat à votre nom dans ce service : il n'y a rien à vous montrer.",
			Help:    "Si une personne vous aide pour vos démarches, elle vous proposera un mandat ; vous pourrez alors le retrouver ici.",
			Retry:   "/", RetryLabel: "Retour à l'accueil"})
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, a.ReturnTo, http.StatusSeeOther)
	return nil
}

func (s *Server) usagerLogout(w http.ResponseWriter, r *http.Request) error {
	target, err := s.auth.LogoutUsager(w, r)
	if err != nil {
		return err
	}
	if target == "" {
		target = "/mon-espace/deconnecte"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

type spaceLoggedOutPage struct{ Page }

func (s *Server) usagerLoggedOut(w http.ResponseWriter, r *http.Request) error {
	s.render(w, r, http.StatusOK, "mon-espace-deconnecte", &spaceLoggedOutPage{Page: s.base(r)})
	return nil
}

// historyLine is one action taken for the person, in plain French.
type historyLine struct {
	Index int64
	When  time.Time
	Text  string
	// For an action taken for the person: it can be objected to; its
	// objection (and the answer), and the aidants' declarations of error.
	Action       bool
	Objection    *objection.Objection
	Declarations []*objection.Declaration
}

type spacePage struct {
	Page
	Person   *mandate.Usager
	Mandates []mandate.View
	History  []historyLine
	Older    int64 // the index to continue from, 0 when there is no more
	Newer    bool
	Now      time.Time
	Notice   string
	// ActionMails: a message for each action; Reachable: FranceConnect
	// gave an address (otherwise no switch is shown).
	ActionMails, Reachable bool
}

func (s *Server) space(w http.ResponseWriter, r *http.Request, u *auth.Usager) error {
	person, err := s.mandates.Usager(r.Context(), u.UsagerID)
	if err != nil {
		return err
	}
	ms, err := s.mandates.UsagerMandates(r.Context(), u.UsagerID)
	if err != nil {
		return err
	}
	var before int64
	if v := r.URL.Query().Get("avant"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before < 1 {
			return badRequest("Le numéro de page est incorrect.")
		}
	}
	entries, err := s.log.ForUsager(r.Context(), u.UsagerID, before, historyPage+1)
	if err != nil {
		return err
	}
	page := &spacePage{Page: s.base(r), Person: person, Mandates: ms, Now: s.now(), Newer: before > 0}
	if len(entries) > historyPage {
		entries = entries[:historyPage]
		page.Older = entries[len(entries)-1].Index
	}
	objs, decls, err := s.objections.ForUsager(r.Context(), u.UsagerID)
	if err != nil {
		return err
	}
	n := s.namer(r.Context())
	for _, e := range entries {
		l := historyLine{Index: e.Index, When: e.Event.Time.Time, Text: n.describe(e.Event), Action: e.Event.Type == audit.MandateUsed}
		if l.Action {
			l.Objection, l.Declarations = objs[e.Index], decls[e.Index]
		}
		page.History = append(page.History, l)
	}
	if n.err != nil {
		return n.err
	}
	if page.ActionMails, page.Reachable, err = notify.ActionMails(r.Context(), s.log.DB(), u.UsagerID); err != nil {
		return err
	}
	switch r.URL.Query().Get("fait") {
	case "courriels-oui":
		page.Notice = "C'est noté : vous recevrez un courriel à chaque démarche faite pour vous."
	case "courriels-non":
		page.Notice = "C'est noté : vous ne recevrez plus de courriel à chaque démarche. Les autres messages (mandat signé, retiré, qui prend fin) continuent."
	}
	if r.URL.Query().Get("revoque") == "1" {
		page.Notice = "Votre retrait est enregistré : il prend effet immédiatement."
	}
	s.render(w, r, http.StatusOK, "mon-espace", page)
	return nil
}

// namer finds the names the history shows, once per request. A name that
// does not exist (any more) reads as a generic one; a name that cannot be
// read is err, which the caller returns instead of a page that would hide
// the failure.
type namer struct {
	s       *Server
	ctx     context.Context
	aidants map[string]string
	orgs    map[string]string
	err     error
}

func (n *namer) failed(err error) {
	if !errors.Is(err, org.ErrNotFound) && n.err == nil {
		n.err = err
	}
}

func (s *Server) namer(ctx context.Context) *namer {
	return &namer{s: s, ctx: ctx, aidants: map[string]string{}, orgs: map[string]string{}}
}

func (n *namer) aidant(id string) string {
	if id == "" {
		return "une personne de la structure"
	}
	if v, ok := n.aidants[id]; ok {
		return v
	}
	v := "une personne de la structure"
	if a, err := n.s.dir.Aidant(n.ctx, id); err == nil {
		v = a.GivenName + " " + a.FamilyName
	} else {
		n.failed(err)
	}
	n.aidants[id] = v
	return v
}

func (n *namer) org(id string) string {
	if v, ok := n.orgs[id]; ok {
		return v
	}
	v := "la structure"
	if o, err := n.s.dir.Organisation(n.ctx, id); err == nil {
		v = o.Name
	} else {
		n.failed(err)
	}
	n.orgs[id] = v
	return v
}

func (n *namer) service(id string) string {
	if n.s.services != nil {
		if name := n.s.services(n.ctx, id); name != "" {
			return name
		}
	}
	return "un service en ligne"
}

func labels(codes []string) string {
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = mandate.Label(c)
	}
	return strings.Join(out, ", ")
}

// describe says, in plain French, what an event did for the person: who
// acted, by full name and organisation; never an id or a code.
func (n *namer) describe(e audit.Event) string {
	text := n.sentence(e)
	if r, size := utf8.DecodeRuneInString(text); r != utf8.RuneError {
		return string(unicode.ToUpper(r)) + text[size:]
	}
	return text
}

func (n *namer) sentence(e audit.Event) string {
	who := func() string { return n.aidant(e.Aidant) + ", de " + n.org(e.Organisation) + "," }
	byPerson := e.Actor.Kind == audit.ActorUsager
	reason := ""
	if e.Reason != "" && e.Reason != mandate.ReasonSuperseded {
		reason = " Raison : " + strings.ToLower(mandate.ReasonLabel(e.Reason)[:1]) + mandate.ReasonLabel(e.Reason)[1:] + "."
	}
	switch e.Type {
	case audit.MandateUsed:
		return who() + " a ouvert « " + n.service(e.Service) + " » pour vous, pour la démarche « " + labels(e.Demarches) + " »."
	case audit.TokenIssued:
		return "« " + n.service(e.Service) + " » a reçu votre identité, et sait que " + n.aidant(e.Aidant) + ", de " + n.org(e.Organisation) + ", agit pour vous."
	case audit.UsagerIdentified:
		return "Vous avez confirmé votre identité avec FranceConnect, pour un mandat proposé par " + n.org(e.Organisation) + "."
	case audit.MandateConsentGiven:
		return "Vous avez donné votre accord à " + n.org(e.Organisation) + " pour : " + labels(e.Demarches) + "."
	case audit.MandateConsentRefused:
		return "Vous avez refusé le mandat proposé par " + n.org(e.Organisation) + "."
	case audit.MandateCreated:
		return "Votre mandat n° " + mandate.Ref(e.Mandate) + " avec " + n.org(e.Organisation) + " est signé. Il a été préparé par " + n.aidant(e.Aidant) + "."
	case audit.MandateRenewed:
		return "Votre mandat avec " + n.org(e.Organisation) + " a été renouvelé."
	case audit.MandateSuperseded:
		return "Un nouveau mandat avec " + n.org(e.Organisation) + " remplace l'ancien pour : " + labels(e.Demarches) + "."
	case audit.MandateDemarcheRevoked:
		if byPerson {
			return "Vous avez retiré la démarche « " + labels(e.Demarches) + " » de votre mandat avec " + n.org(e.Organisation) + "."
		}
		return who() + " a retiré la démarche « " + labels(e.Demarches) + " » de votre mandat." + reason
	case audit.MandateRevoked:
		if byPerson {
			return "Vous avez retiré votre mandat avec " + n.org(e.Organisation) + "."
		}
		return who() + " a retiré votre mandat." + reason
	case audit.UsagerObjected:
		return "Vous avez dit qu'une démarche faite par " + n.aidant(e.Aidant) + ", de " + n.org(e.Organisation) + ", n'était pas d'accord."
	case audit.ObjectionHandled:
		return n.org(e.Organisation) + " a répondu à votre signalement."
	case audit.ActionErrorDeclared:
		if _, ok := e.Detail["completes"]; ok {
			return who() + " a complété sa déclaration d'erreur sur une démarche faite pour vous."
		}
		return who() + " a déclaré une erreur sur une démarche faite pour vous."
	case audit.UsagerNotificationsChanged:
		if on, _ := e.Detail["action_mails"].(bool); on {
			return "Vous avez demandé un courriel à chaque démarche faite pour vous."
		}
		return "Vous avez arrêté les courriels à chaque démarche faite pour vous."
	case audit.UsagerLogin:
		return "Vous avez ouvert votre espace."
	case audit.UsagerLogout:
		return "Vous avez quitté votre espace."
	case audit.AuditExported:
		return "Vous avez téléchargé vos données."
	}
	return "Une action a été enregistrée."
}

type receiptPage struct {
	Page
	Index     int64
	When      time.Time
	Text      string
	Leaf      int64
	Size      int64
	Witnessed bool
	Checked   time.Time
	LeafHash  string
	QR        template.URL
	ProofURL  string
}

// usagerReceiptPage shows, in plain French, that an action taken for the
// person is in the public journal, with what a verifier needs: the QR code
// of the public proof, and the receipt to download.
func (s *Server) usagerReceiptPage(w http.ResponseWriter, r *http.Request, u *auth.Usager) error {
	raw := r.PathValue("index")
	idx, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || idx < 0 {
		return badRequest("Ce numéro d'action est incorrect.")
	}
	e, err := s.log.At(r.Context(), idx, u.UsagerID)
	if err != nil {
		return s.usagerDenied(r, u, "event", raw, err)
	}
	rc, err := s.log.ReceiptFor(r.Context(), idx, u.UsagerID)
	if err != nil {
		return s.usagerDenied(r, u, "event", raw, err)
	}
	n := s.namer(r.Context())
	page := &receiptPage{Page: s.base(r), Index: idx, When: e.Event.Time.Time, Text: n.describe(e.Event), Leaf: rc.Index, Size: rc.Size,
		Witnessed: rc.Witnessed, Checked: s.now(), LeafHash: base64.StdEncoding.EncodeToString(rc.LeafHash[:])}
	if n.err != nil {
		return n.err
	}
	page.ProofURL = s.abs(fmt.Sprintf("/audit/proof/inclusion?index=%d&size=%d", rc.Index, rc.Size))
	if page.QR, err = qrDataURL(page.ProofURL); err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "mon-espace-recu", page)
	return nil
}

type spaceRevokePage struct {
	Page
	M        *mandate.View
	Demarche string
	Label    string
}

// usagerRevokeConfirm asks the person to confirm a withdrawal.
func (s *Server) usagerRevokeConfirm(w http.ResponseWriter, r *http.Request, u *auth.Usager) error {
	id := r.PathValue("id")
	m, err := s.mandates.GetForUsager(r.Context(), u.UsagerID, id)
	if err != nil {
		return s.usagerDenied(r, u, "mandate", id, err)
	}
	page := &spaceRevokePage{Page: s.base(r), M: m, Demarche: r.URL.Query().Get("demarche")}
	if page.Demarche != "" {
		if !m.Covers(page.Demarche, s.now()) {
			return badRequest("Cette démarche n'est pas, ou plus, dans ce mandat.")
		}
		page.Label = mandate.Label(page.Demarche)
	}
	s.render(w, r, http.StatusOK, "mon-espace-revocation", page)
	return nil
}

func (s *Server) usagerRevoke(w http.ResponseWriter, r *http.Request, u *auth.Usager) error {
	id := r.PathValue("id")
	if _, err := s.mandates.GetForUsager(r.Context(), u.UsagerID, id); err != nil {
		return s.usagerDenied(r, u, "mandate", id, err)
	}
	err := s.mandates.Revoke(r.Context(), mandate.Revocation{By: u.Actor(), UsagerID: u.UsagerID, MandateID: id,
		Demarche: r.PostFormValue("demarche"), Reason: mandate.ReasonByPerson})
	if err != nil {
		return s.mandateError(r, "mandate", id, err)
	}
	http.Redirect(w, r, "/mon-espace?revoque=1", http.StatusSeeOther)
	return nil
}

// usagerDenied journals an attempt on another person's object and answers
// 404, as for one that does not exist.
func (s *Server) usagerDenied(r *http.Request, u *auth.Usager, kind, id string, err error) error {
	if !errors.Is(err, mandate.ErrOtherOrganisation) && !errors.Is(err, audit.ErrOtherUsager) {
		if errors.Is(err, mandate.ErrNotFound) || errors.Is(err, audit.ErrNotFound) {
			return &Error{Status: http.StatusNotFound, Msg: msgNotFound, Err: err}
		}
		return err
	}
	// The attempt is the person's (actor), but not an action taken for
	// them: it stays out of their history, which names nobody else.
	ev := audit.Event{Type: audit.AccessDenied, Actor: u.Actor(),
		Detail: map[string]any{"object": kind, "id": id, "path": r.Pattern}}
	if werr := s.log.Write(r.Context(), func(tx *audit.Tx) error { _, err := tx.Append(ev); return err }); werr != nil {
		return werr
	}
	return &Error{Status: http.StatusNotFound, Msg: msgNotFound, Err: fmt.Errorf("%s %s of another person", kind, id)}
}

// usagerReceipt downloads the receipt of one of the person's events.
func (s *Server) usagerReceipt(w http.ResponseWriter, r *http.Request, u *auth.Usager) error {
	raw := r.PathValue("index")
	idx, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || idx < 0 {
		return badRequest("Ce numéro d'action est incorrect.")
	}
	rc, err := s.log.ReceiptFor(r.Context(), idx, u.UsagerID)
	if err != nil {
		return s.usagerDenied(r, u, "event", raw, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="recu-%d.json"`, idx))
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rc)
}

// exported journals a download of the person's data (audit.exported),
// once the data is read and before any of it is sent: a download that
// could not be read leaves no event.
func (s *Server) exported(r *http.Request, u *auth.Usager, format string) error {
	return s.log.Write(r.Context(), func(tx *audit.Tx) error {
		_, err := tx.Append(audit.Event{Type: audit.AuditExported, Actor: u.Actor(), Usager: u.UsagerID,
			Detail: map[string]any{"format": format, "scope": "usager"}})
		return err
	})
}

// exportJSON downloads everything the instance holds about the person.
func (s *Server) exportJSON(w http.ResponseWriter, r *http.Request, u *auth.Usager) error {
	person, err := s.mandates.Usager(r.Context(), u.UsagerID)
	if err != nil {
		return err
	}
	ms, err := s.mandates.UsagerMandates(r.Context(), u.UsagerID)
	if err != nil {
		return err
	}
	type exportMandate struct {
		ID           string   `json:"numero"`
		Organisation string   `json:"structure"`
		SIRET        string   `json:"siret"`
		Demarches    []string `json:"demarches"`
		Retirees     []string `json:"demarches_retirees"`
		Debut        string   `json:"debut"`
		Fin          string   `json:"fin"`
		Etat         string   `json:"etat"`
		Signe        string   `json:"mandat_signe"`
	}
	// Each event with what recomputes its public entry in the journal:
	// SHA-256(sel ‖ octets exacts de evenement_brut) = entree (SPEC §6.1).
	type exportEvent struct {
		Index   int64           `json:"index"`
		Texte   string          `json:"texte"`
		Donnees json.RawMessage `json:"evenement"`
		Brut    string          `json:"evenement_brut"`
		Sel     []byte          `json:"sel"`
		Entree  []byte          `json:"entree"`
	}
	out := struct {
		Personne struct {
			Prenoms       string `json:"prenoms"`
			Nom           string `json:"nom"`
			DateNaissance string `json:"date_de_naissance"`
			Sexe          string `json:"sexe"`
			LieuNaissance string `json:"lieu_de_naissance"`
			PaysNaissance string `json:"pays_de_naissance"`
			Courriel      string `json:"courriel,omitempty"`
		} `json:"personne"`
		Mandats    []exportMandate `json:"mandats"`
		Evenements []exportEvent   `json:"evenements"`
		Journal    string          `json:"journal"`
	}{Journal: "Chaque événement est inscrit au journal public sous la forme d'une empreinte, « entree » : SHA-256 du « sel » suivi des octets exacts de « evenement_brut » (sel et entree en base64). Seul qui a le sel peut relier l'empreinte à l'événement. « index » permet d'en télécharger le reçu vérifiable."}
	out.Personne.Prenoms, out.Personne.Nom, out.Personne.DateNaissance = person.GivenName, person.FamilyName, person.Birthdate
	out.Personne.Sexe, out.Personne.LieuNaissance, out.Personne.PaysNaissance, out.Personne.Courriel = person.Gender, person.Birthplace, person.Birthcountry, person.Email
	now := s.now()
	for _, m := range ms {
		em := exportMandate{ID: m.ID, Organisation: m.OrgName, SIRET: m.SIRET, Demarches: m.ActiveDemarches(),
			Debut: m.CreatedAt.UTC().Format(time.RFC3339), Fin: m.ExpiresAt.UTC().Format(time.RFC3339), Etat: m.Status(now), Signe: m.JWS}
		for _, d := range m.Demarches {
			if d.Revoked() {
				em.Retirees = append(em.Retirees, d.Code)
			}
		}
		out.Mandats = append(out.Mandats, em)
	}
	n := s.namer(r.Context())
	err = s.log.ForUsagerAll(r.Context(), u.UsagerID, func(e audit.Entry) error {
		entry := e.Entry()
		out.Evenements = append(out.Evenements, exportEvent{Index: e.Index, Texte: n.describe(e.Event), Donnees: e.Body,
			Brut: string(e.Body), Sel: e.Salt, Entree: entry[:]})
		return nil
	})
	if err != nil {
		return err
	}
	if n.err != nil {
		return n.err
	}
	if err := s.exported(r, u, "json"); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="mes-donnees-aidants.json"`)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// exportCSV downloads the person's actions, one per line. They are read
// before the download is journaled: a person's actions are few enough to
// hold, and a download that could not be read is then journaled as
// nothing.
func (s *Server) exportCSV(w http.ResponseWriter, r *http.Request, u *auth.Usager) error {
	n := s.namer(r.Context())
	var lines [][]string
	err := s.log.ForUsagerAll(r.Context(), u.UsagerID, func(e audit.Entry) error {
		where := ""
		if e.Event.Organisation != "" {
			where = n.org(e.Event.Organisation)
		}
		ref := ""
		if e.Event.Mandate != "" {
			ref = mandate.Ref(e.Event.Mandate)
		}
		lines = append(lines, csvSafe([]string{strconv.FormatInt(e.Index, 10), frDateTime(e.Event.Time.Time), n.describe(e.Event),
			where, labels(e.Event.Demarches), ref, e.Event.Type}))
		return nil
	})
	if err != nil {
		return err
	}
	if n.err != nil {
		return n.err
	}
	if err := s.exported(r, u, "csv"); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="mes-actions-aidants.csv"`)
	cw := frenchCSV(w)
	cw.Write([]string{"N° au journal", "Date et heure", "Ce qui a été fait", "Structure", "Démarches", "Mandat n°", "Code de l'événement"})
	return cw.WriteAll(lines)
}

// usagerActionMails turns the action messages off or on.
func (s *Server) usagerActionMails(w http.ResponseWriter, r *http.Request, u *auth.Usager) error {
	var on bool
	switch r.PostFormValue("courriels") {
	case "oui":
		on = true
	case "non":
	default:
		return badRequest("Choisissez si vous voulez recevoir un courriel à chaque démarche.")
	}
	if err := notify.SetActionMails(r.Context(), s.log, u.UsagerID, on); err != nil {
		return err
	}
	done := "courriels-non"
	if on {
		done = "courriels-oui"
	}
	http.Redirect(w, r, "/mon-espace?fait="+done+"#courriels", http.StatusSeeOther)
	return nil
}

type objectionPage struct {
	Page
	Index    int64
	Action   string // the action, as the history says it
	When     time.Time
	Reasons  []objection.Reason
	Reason   string
	Text     string
	Withdraw bool
	Problem  string
	// Done: the objection recorded (the outcome page); Existing: the
	// action was objected to before.
	Done, Existing *objection.Objection
	Active         bool // the mandate is still active (withdrawing is offered)
}

var objectionMessages = map[error]string{
	objection.ErrReason:   "Choisissez ce qui ne va pas.",
	objection.ErrText:     "Dites-nous en quelques mots ce qui ne va pas (2 000 caractères au plus).",
	objection.ErrObjected: "Vous avez déjà signalé cette démarche.",
}

// usagerObjection is "Ce n'était pas d'accord": the person says what is
// wrong with an action taken for them, and may withdraw the mandate in the
// same step.
func (s *Server) usagerObjection(w http.ResponseWriter, r *http.Request, u *auth.Usager) error {
	raw := r.PathValue("index")
	idx, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || idx < 0 {
		return &Error{Status: http.StatusNotFound, Msg: msgNotFound}
	}
	ev, err := s.objections.Action(r.Context(), idx, u.UsagerID)
	if errors.Is(err, objection.ErrNotAction) {
		return &Error{Status: http.StatusNotFound, Msg: msgNotFound, Err: err}
	}
	if err != nil {
		return s.usagerDenied(r, u, "event", raw, err)
	}
	n := s.namer(r.Context())
	page := &objectionPage{Page: s.base(r), Index: idx, Action: n.describe(*ev), When: ev.Time.Time, Reasons: objection.Reasons}
	if n.err != nil {
		return n.err
	}
	objs, _, err := s.objections.ForUsager(r.Context(), u.UsagerID)
	if err != nil {
		return err
	}
	page.Existing = objs[idx]
	if m, err := s.mandates.GetForUsager(r.Context(), u.UsagerID, ev.Mandate); err == nil {
		page.Active = m.Status(s.now()) == mandate.Active
	}
	status := http.StatusOK
	if r.Method == http.MethodPost && page.Existing == nil {
		page.Reason, page.Text, page.Withdraw = r.PostFormValue("raison"), r.PostFormValue("precision"), r.PostFormValue("retirer") == "oui"
		o, err := s.objections.Object(r.Context(), u.UsagerID, idx, page.Reason, page.Text, page.Withdraw && page.Active)
		if err == nil {
			if s.mailWake != nil {
				s.mailWake()
			}
			page.Done = o
			s.render(w, r, http.StatusOK, "mon-espace-objection-fin", page)
			return nil
		}
		msg, ok := "", false
		for target, text := range objectionMessages {
			if errors.Is(err, target) {
				msg, ok = text, true
			}
		}
		if !ok {
			return err
		}
		page.Problem, status = msg, http.StatusBadRequest
	}
	s.render(w, r, status, "mon-espace-objection", page)
	return nil
}
