package web

import (
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"rsc.io/qr"

	"aidants/audit"
	"aidants/auth"
	"aidants/mandate"
	"aidants/notify"
	"aidants/objection"
)

// actor is the signed-in aidant as the mandate domain names them.
func actor(p *auth.Principal) mandate.Actor {
	return mandate.Actor{AidantID: p.AidantID, OrganisationID: p.OrganisationID}
}

// denied records a refused attempt on someone else's object
// (access.denied) and answers 404, as for an object that does not exist.
func (s *Server) denied(r *http.Request, kind, id string) error {
	p := auth.PrincipalFrom(r.Context())
	ev := audit.Event{Type: audit.AccessDenied, Detail: map[string]any{"object": kind, "id": id, "path": r.Pattern}}
	if p != nil {
		ev.Actor, ev.Aidant, ev.Organisation = p.Actor(), p.AidantID, p.OrganisationID
	} else {
		ev.Actor = audit.Actor{Kind: audit.ActorSystem, ID: "anonymous"}
	}
	if err := s.log.Write(r.Context(), func(tx *audit.Tx) error { _, err := tx.Append(ev); return err }); err != nil {
		return err
	}
	return &Error{Status: http.StatusNotFound, Msg: msgNotFound, Err: fmt.Errorf("%s %s of another owner", kind, id)}
}

// mandateError turns a domain error into a page error; another
// organisation's object is logged and answered like an unknown one.
func (s *Server) mandateError(r *http.Request, kind, id string, err error) error {
	switch {
	case errors.Is(err, mandate.ErrOtherOrganisation):
		return s.denied(r, kind, id)
	case errors.Is(err, mandate.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Msg: msgNotFound, Err: err}
	}
	for target, text := range mandateMessages {
		if errors.Is(err, target) {
			return &Error{Status: http.StatusBadRequest, Msg: message{"Action impossible", text}, Err: err}
		}
	}
	return err
}

var mandateMessages = map[error]string{
	mandate.ErrDemarcheRefused: "Une des démarches choisies n'est pas autorisée pour votre structure. Rien n'a été enregistré.",
	mandate.ErrNoDemarche:      "Choisissez au moins une démarche.",
	mandate.ErrBadDuration:     "Choisissez une durée parmi celles proposées.",
	mandate.ErrBadMethod:       "Choisissez si la personne est présente ou donnera son accord à distance.",
	mandate.ErrDraftExpired:    "Ce projet de mandat a expiré. Recommencez : rien n'a été signé.",
	mandate.ErrDraftState:      "Ce projet de mandat n'est plus à cette étape. Reprenez depuis la liste des mandats.",
	mandate.ErrLinkUsed:        "Ce lien a déjà servi, ou n'est plus valable. Demandez un nouveau lien à la personne qui vous accompagne.",
	mandate.ErrNonce:           "La connexion FranceConnect ne correspond pas à ce projet de mandat. Par sécurité, rien n'a été enregistré.",
	mandate.ErrWrongPerson:     "Un renouvellement doit être accepté par la personne du mandat d'origine. Rien n'a été enregistré.",
	mandate.ErrNotConfirmed:    "Les deux confirmations sont nécessaires : celle de la personne et la vôtre.",
	mandate.ErrRevoked:         "Ce mandat, ou cette démarche, est déjà retiré.",
	mandate.ErrExpired:         "Ce mandat est arrivé à échéance.",
	mandate.ErrNotRenewable:    "Ce mandat ne peut plus être renouvelé (retiré, ou échu depuis plus d'un an). Créez un nouveau mandat.",
	mandate.ErrReason:          "Choisissez la raison du retrait.",
	mandate.ErrReasonText:      "Précisez la raison du retrait (2 000 caractères au plus).",
	mandate.ErrIdentity:        "FranceConnect n'a pas transmis l'identité complète de la personne. Rien n'a été enregistré.",
}

// fresh tells whether the aidant authenticated recently enough for a
// sensitive action; otherwise it sends them to authenticate again and
// come back to retour.
func (s *Server) fresh(w http.ResponseWriter, r *http.Request, retour string) bool {
	p := auth.PrincipalFrom(r.Context())
	if p.FreshFor(s.auth.StepUpMaxAge(), s.now()) {
		return true
	}
	http.Redirect(w, r, "/connexion/aidant/reauthentification?retour="+url.QueryEscape(retour), http.StatusSeeOther)
	return false
}

// qrDataURL draws text as a QR code, inlined as a data: URL.
func qrDataURL(text string) (template.URL, error) {
	code, err := qr.Encode(text, qr.L)
	if err != nil {
		return "", fmt.Errorf("qr: %w", err)
	}
	code.Scale = 4
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(code.PNG())), nil
}

// demarcheChoice is a checkbox of the new-mandate form.
type demarcheChoice struct {
	Code, Label string
	Checked     bool
}

type mandatesPage struct {
	Page
	Filter   string
	Mandates []mandate.View
	Drafts   []draftRow
	Now      time.Time
}

type draftRow struct {
	mandate.Draft
	State string
}

func (s *Server) mandatesList(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	filter := map[string]string{"actifs": mandate.Active, "echus": mandate.Expired, "revoques": mandate.Revoked}[r.URL.Query().Get("etat")]
	ms, err := s.mandates.Mandates(r.Context(), p.OrganisationID, filter)
	if err != nil {
		return err
	}
	ds, err := s.mandates.RemoteDrafts(r.Context(), p.OrganisationID)
	if err != nil {
		return err
	}
	page := &mandatesPage{Page: s.base(r), Filter: r.URL.Query().Get("etat"), Mandates: ms, Now: s.now()}
	for _, d := range ds {
		page.Drafts = append(page.Drafts, draftRow{Draft: d, State: d.State(s.now())})
	}
	s.render(w, r, http.StatusOK, "mandats", page)
	return nil
}

type newMandatePage struct {
	Page
	Demarches []demarcheChoice
	Durations []mandate.Duration
	Renew     *mandate.View
}

func (s *Server) newMandateForm(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	if !p.IsAidant {
		return &Error{Status: http.StatusForbidden, Msg: msgForbidden}
	}
	if !s.fresh(w, r, "/mandats/nouveau") {
		return nil
	}
	o, err := s.dir.Organisation(r.Context(), p.OrganisationID)
	if err != nil {
		return err
	}
	page := &newMandatePage{Page: s.base(r), Durations: mandate.Durations}
	for _, code := range o.AllowedDemarches() {
		page.Demarches = append(page.Demarches, demarcheChoice{Code: code, Label: mandate.Label(code)})
	}
	s.render(w, r, http.StatusOK, "mandat-nouveau", page)
	return nil
}

func (s *Server) newMandate(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	if !p.IsAidant {
		return &Error{Status: http.StatusForbidden, Msg: msgForbidden}
	}
	if err := r.ParseForm(); err != nil {
		return badRequest("Le formulaire est illisible.")
	}
	if !s.fresh(w, r, "/mandats/nouveau") {
		return nil
	}
	d, link, err := s.mandates.CreateDraft(r.Context(), actor(p), mandate.NewDraft{
		Demarches: r.PostForm["demarches"], Duration: r.PostFormValue("duree"), Method: r.PostFormValue("methode")})
	if err != nil {
		return s.mandateError(r, "draft", "", err)
	}
	if d.Method == mandate.Remote {
		return s.showLink(w, r, d, link)
	}
	http.Redirect(w, r, "/brouillons/"+d.ID, http.StatusSeeOther)
	return nil
}

type linkPage struct {
	Page
	Draft   *mandate.Draft
	URL     string
	Token   string // for the form that sends the link by email
	QR      template.URL
	Expires time.Time
	// Mail: the link can be sent by email; SentTo: it was, to this address;
	// Problem: why it could not be, with the address typed.
	Mail            bool
	SentTo, Problem string
	Typed           string
}

// showLink shows a remote consent link, once: only its hash is kept.
func (s *Server) showLink(w http.ResponseWriter, r *http.Request, d *mandate.Draft, link string) error {
	return s.renderLink(w, r, http.StatusOK, &linkPage{Draft: d, Token: link})
}

func (s *Server) renderLink(w http.ResponseWriter, r *http.Request, status int, p *linkPage) error {
	p.Page = s.base(r)
	p.URL = s.abs("/consentement?jeton=" + url.QueryEscape(p.Token))
	p.Expires = p.Draft.ExpiresAt.Time
	p.Mail = s.notify != nil && s.notify.On()
	img, err := qrDataURL(p.URL)
	if err != nil {
		return err
	}
	p.QR = img
	s.render(w, r, status, "mandat-lien", p)
	return nil
}

// sendLink sends the remote consent link of a draft by email to the
// address the aidant typed (SPEC §5.2): the one message that carries a
// token, single-use, expiring, and useless without the person's
// FranceConnect. The address is not journaled.
func (s *Server) sendLink(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	if err := r.ParseForm(); err != nil {
		return badRequest("Le formulaire est illisible.")
	}
	id, token := r.PathValue("id"), r.PostFormValue("jeton")
	to := strings.ToLower(strings.TrimSpace(r.PostFormValue("courriel")))
	d, err := s.mandates.Draft(r.Context(), actor(p), id)
	if err != nil {
		return s.mandateError(r, "draft", id, err)
	}
	page := &linkPage{Draft: d, Token: token, Typed: to}
	if s.notify == nil || !s.notify.On() {
		return &Error{Status: http.StatusNotFound, Msg: msgNotFound}
	}
	if !notify.Deliverable(to) {
		page.Problem = "Cette adresse n'est pas une adresse électronique valable (exemple : prenom.nom@exemple.fr). Rien n'a été envoyé."
		return s.renderLink(w, r, http.StatusBadRequest, page)
	}
	err = s.mandates.SendLink(r.Context(), actor(p), id, token, func(tx *audit.Tx, d *mandate.Draft) error {
		data := notify.LinkData{Demarches: make([]string, len(d.Demarches)), Link: s.abs("/consentement?jeton=" + url.QueryEscape(token)), Expires: d.ExpiresAt.Time}
		for i, c := range d.Demarches {
			data.Demarches[i] = mandate.Label(c)
		}
		var err error
		if data.Aidant, err = notify.AidantName(tx, p.AidantID); err != nil {
			return err
		}
		if data.Organisation, err = notify.OrganisationName(tx, d.OrganisationID); err != nil {
			return err
		}
		c, err := notify.LinkMail.Render(data)
		if err != nil {
			return err
		}
		return s.notify.Queue(tx, to, c, "")
	})
	switch {
	case errors.Is(err, mandate.ErrLinkUsed), errors.Is(err, mandate.ErrDraftExpired), errors.Is(err, mandate.ErrDraftState):
		return &Error{Status: http.StatusBadRequest, Msg: message{"Lien non envoyé", "Ce lien a déjà servi, a expiré, ou n'est pas celui de ce projet de mandat. Rien n'a été envoyé : créez un nouveau lien depuis « Nouveau mandat »."}, Err: err}
	case errors.Is(err, mandate.ErrLinkSends):
		page.Problem = fmt.Sprintf("Ce lien a déjà été envoyé %d fois. Rien n'a été envoyé de plus : transmettez-le autrement, ou créez un nouveau lien.", mandate.MaxLinkSends)
		return s.renderLink(w, r, http.StatusBadRequest, page)
	case err != nil:
		return s.mandateError(r, "draft", id, err)
	}
	if s.mailWake != nil {
		s.mailWake()
	}
	page.SentTo, page.Typed = to, ""
	return s.renderLink(w, r, http.StatusOK, page)
}

type draftPage struct {
	Page
	Draft  *mandate.Draft
	State  string
	Usager *mandate.Usager
	Org    string
	Until  time.Time
}

// draft shows an on-site draft: the FranceConnect step, or the recap.
func (s *Server) draft(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	id := r.PathValue("id")
	d, err := s.mandates.Draft(r.Context(), actor(p), id)
	if err != nil {
		return s.mandateError(r, "draft", id, err)
	}
	page := &draftPage{Page: s.base(r), Draft: d, State: d.State(s.now()), Org: p.OrganisationName,
		Until: d.DurationSpan().Until(s.now())}
	if d.UsagerID != "" {
		if page.Usager, err = s.mandates.Usager(r.Context(), d.UsagerID); err != nil {
			return err
		}
	}
	if d.MandateID != "" {
		http.Redirect(w, r, "/mandats/"+d.MandateID, http.StatusSeeOther)
		return nil
	}
	if page.State == mandate.DraftIdentified && d.Method == mandate.OnSite && !s.fresh(w, r, r.URL.Path) {
		return nil
	}
	s.render(w, r, http.StatusOK, "brouillon", page)
	return nil
}

// draftFranceConnect sends the person, on the aidant's screen, to
// FranceConnect with the nonce bound to the draft.
func (s *Server) draftFranceConnect(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	id := r.PathValue("id")
	d, err := s.mandates.Draft(r.Context(), actor(p), id)
	if err != nil {
		return s.mandateError(r, "draft", id, err)
	}
	if d.Method != mandate.OnSite {
		return s.mandateError(r, "draft", id, mandate.ErrDraftState)
	}
	if st := d.State(s.now()); st != mandate.DraftPending && st != mandate.DraftIdentified {
		return s.mandateError(r, "draft", id, mandate.ErrDraftState)
	}
	target, err := s.auth.BeginFranceConnect(w, r, auth.PurposeMandateConsent, "/brouillons/"+d.ID, d.ID, d.Nonce())
	if err != nil {
		return err
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

// signDraft records both confirmations and creates the mandate.
func (s *Server) signDraft(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	id := r.PathValue("id")
	if err := r.ParseForm(); err != nil {
		return badRequest("Le formulaire est illisible.")
	}
	if !s.fresh(w, r, "/brouillons/"+id) {
		return nil
	}
	m, err := s.mandates.ConfirmOnSite(r.Context(), actor(p), id, r.PostFormValue("accord_personne") == "oui", r.PostFormValue("confirmation_aidant") == "oui")
	if err != nil {
		return s.mandateError(r, "draft", id, err)
	}
	http.Redirect(w, r, "/mandats/"+m.ID+"/attestation", http.StatusSeeOther)
	return nil
}

type mandatePage struct {
	Page
	M         *mandate.View
	Status    string
	Durations []mandate.Duration
	Now       time.Time
	// Texts are the free texts of the withdrawals, by hash, as far as
	// they were not erased.
	Texts map[string]string
	// Actions taken with the mandate, newest first (at most 50), with
	// the declarations of error and the person's objections on them.
	Actions []mandateAction
}

// mandateAction is an action taken with a mandate, as the aidant reads it.
type mandateAction struct {
	Index        int64
	When         time.Time
	Text         string
	Objection    *objection.Objection
	Declarations []*objection.Declaration
}

// reasonTexts reads the free texts whose hashes the mandate's withdrawals
// carry.
func (s *Server) reasonTexts(r *http.Request, m *mandate.View) (map[string]string, error) {
	out := map[string]string{}
	hashes := []string{m.RevokeText}
	for _, d := range m.Demarches {
		hashes = append(hashes, d.Text)
	}
	for _, h := range hashes {
		if h == "" || out[h] != "" {
			continue
		}
		text, err := audit.FreeTextOf(r.Context(), s.log.DB(), h)
		switch {
		case errors.Is(err, audit.ErrErased):
			out[h] = "(précision effacée)"
		case err != nil:
			return nil, err
		default:
			out[h] = text
		}
	}
	return out, nil
}

func (s *Server) loadMandate(r *http.Request) (*mandate.View, error) {
	p := auth.PrincipalFrom(r.Context())
	id := r.PathValue("id")
	m, err := s.mandates.Get(r.Context(), p.OrganisationID, id)
	if err != nil {
		return nil, s.mandateError(r, "mandate", id, err)
	}
	return m, nil
}

func (s *Server) mandatePage(w http.ResponseWriter, r *http.Request) error {
	m, err := s.loadMandate(r)
	if err != nil {
		return err
	}
	texts, err := s.reasonTexts(r, m)
	if err != nil {
		return err
	}
	page := &mandatePage{Page: s.base(r), M: m, Status: m.Status(s.now()), Durations: mandate.Durations, Now: s.now(), Texts: texts}
	objs, decls, err := s.objections.ForMandate(r.Context(), m.ID)
	if err != nil {
		return err
	}
	n := s.namer(r.Context())
	err = s.log.Query(r.Context(), audit.Filter{Usager: m.UsagerID, Mandate: m.ID, Type: audit.MandateUsed, Newest: true}, -1, 50, func(e audit.Entry) error {
		page.Actions = append(page.Actions, mandateAction{Index: e.Index, When: e.Event.Time.Time, Objection: objs[e.Index], Declarations: decls[e.Index],
			Text: n.aidant(e.Event.Aidant) + " a ouvert « " + n.service(e.Event.Service) + " » pour la démarche « " + labels(e.Event.Demarches) + " »."})
		return nil
	})
	if err != nil {
		return err
	}
	if n.err != nil {
		return n.err
	}
	if r.URL.Query().Get("fait") == "erreur" {
		page.Flash = "Votre déclaration d'erreur est enregistrée. La personne en est prévenue et la lit à côté de la démarche, dans son espace."
	}
	if d := r.URL.Query().Get("retire"); d != "" {
		if _, ok := mandate.LookupDemarche(d); ok {
			page.Flash = "La démarche « " + mandate.Label(d) + " » est retirée de ce mandat. La structure ne peut plus la faire pour la personne."
		}
	}
	s.render(w, r, http.StatusOK, "mandat", page)
	return nil
}

type withdrawPage struct {
	Page
	M        *mandate.View
	Demarche string // "" for the whole mandate
	Label    string
	Reasons  []mandate.Reason
	Form     url.Values
	Problem  string
}

// withdrawConfirm asks the aidant to confirm a withdrawal, saying what
// will happen, with a reason.
func (s *Server) withdrawConfirm(w http.ResponseWriter, r *http.Request) error {
	m, err := s.loadMandate(r)
	if err != nil {
		return err
	}
	page := &withdrawPage{Page: s.base(r), M: m, Demarche: r.URL.Query().Get("demarche"), Reasons: mandate.RevokeReasons, Form: url.Values{}}
	return s.renderWithdraw(w, r, page, http.StatusOK)
}

func (s *Server) renderWithdraw(w http.ResponseWriter, r *http.Request, page *withdrawPage, status int) error {
	if m := page.M; m.Status(s.now()) != mandate.Active {
		return s.mandateError(r, "mandate", m.ID, map[string]error{mandate.Revoked: mandate.ErrRevoked, mandate.Expired: mandate.ErrExpired}[m.Status(s.now())])
	}
	if page.Demarche != "" {
		if !page.M.Covers(page.Demarche, s.now()) {
			return badRequest("Cette démarche n'est pas, ou plus, dans ce mandat.")
		}
		page.Label = mandate.Label(page.Demarche)
	}
	s.render(w, r, status, "mandat-retrait", page)
	return nil
}

type attestationPage struct {
	Page
	M         *mandate.View
	Status    string
	VerifyURL string
	QR        template.URL
	Printed   time.Time
}

func (s *Server) attestation(page string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		m, err := s.loadMandate(r)
		if err != nil {
			return err
		}
		u := s.abs("/mandats/verify?jws=" + url.QueryEscape(m.JWS))
		img, err := qrDataURL(u)
		if err != nil {
			return err
		}
		status := m.Status(s.now())
		if page == "attestation-revocation" && status != mandate.Revoked && len(m.ActiveDemarches()) == len(m.Demarches) {
			return &Error{Status: http.StatusNotFound, Msg: message{"Pas de retrait", "Ce mandat n'a pas été retiré."}}
		}
		s.render(w, r, http.StatusOK, page, &attestationPage{Page: s.base(r), M: m, Status: status, VerifyURL: u, QR: img, Printed: s.now()})
		return nil
	}
}

// mandateJWT downloads the signed mandate.
func (s *Server) mandateJWT(w http.ResponseWriter, r *http.Request) error {
	m, err := s.loadMandate(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/jwt")
	w.Header().Set("Content-Disposition", `attachment; filename="mandat-`+m.ID+`.jwt"`)
	_, err = io.WriteString(w, m.JWS)
	return err
}

func (s *Server) revokeMandate(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	id := r.PathValue("id")
	if err := r.ParseForm(); err != nil {
		return badRequest("Le formulaire est illisible.")
	}
	if !s.fresh(w, r, "/mandats/"+id) {
		return nil
	}
	dem := r.PostFormValue("demarche")
	err := s.mandates.Revoke(r.Context(), mandate.Revocation{By: p.Actor(), OrganisationID: p.OrganisationID, MandateID: id,
		Demarche: dem, Reason: r.PostFormValue("motif"), Text: r.PostFormValue("precision")})
	if errors.Is(err, mandate.ErrReason) || errors.Is(err, mandate.ErrReasonText) {
		// The same page again, with what was typed and what is missing.
		m, lerr := s.loadMandate(r)
		if lerr != nil {
			return lerr
		}
		page := &withdrawPage{Page: s.base(r), M: m, Demarche: dem, Reasons: mandate.RevokeReasons, Form: r.PostForm,
			Problem: "Choisissez la raison du retrait. Pour « une autre raison », précisez-la (2 000 caractères au plus)."}
		return s.renderWithdraw(w, r, page, http.StatusBadRequest)
	}
	if err != nil {
		return s.mandateError(r, "mandate", id, err)
	}
	target := "/mandats/" + id + "/attestation-revocation"
	if dem != "" {
		target = "/mandats/" + id + "?retire=" + url.QueryEscape(dem)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

func (s *Server) renewMandate(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	id := r.PathValue("id")
	if err := r.ParseForm(); err != nil {
		return badRequest("Le formulaire est illisible.")
	}
	if !s.fresh(w, r, "/mandats/"+id) {
		return nil
	}
	d, link, err := s.mandates.Renew(r.Context(), actor(p), id, r.PostFormValue("duree"), r.PostFormValue("methode"))
	if err != nil {
		return s.mandateError(r, "mandate", id, err)
	}
	if d.Method == mandate.Remote {
		return s.showLink(w, r, d, link)
	}
	http.Redirect(w, r, "/brouillons/"+d.ID, http.StatusSeeOther)
	return nil
}

type verifyPage struct {
	Page
	Checked bool
	Result  *mandate.Verification
	Labels  []string
	Revoked []string
	Issued  time.Time
	Expires time.Time
}

// verifyMandate checks a signed mandate pasted, uploaded or given in ?jws=
// (the attestation's QR code). Anyone may use it.
func (s *Server) verifyMandate(w http.ResponseWriter, r *http.Request) error {
	page := &verifyPage{Page: s.base(r)}
	var jws string
	switch r.Method {
	case http.MethodGet:
		jws = r.URL.Query().Get("jws")
	case http.MethodPost:
		if err := r.ParseMultipartForm(64 << 10); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			return badRequest("Le fichier envoyé est trop gros ou illisible.")
		}
		jws = r.FormValue("jws")
		if f, _, err := r.FormFile("fichier"); err == nil {
			b, _ := io.ReadAll(io.LimitReader(f, 32<<10))
			f.Close()
			jws = string(b)
		}
	}
	if strings.TrimSpace(jws) != "" {
		res, err := s.mandates.Verify(r.Context(), jws)
		if err != nil {
			return err
		}
		page.Checked, page.Result = true, res
		if res.Claims != nil {
			// A démarche withdrawn since the signature is listed once,
			// under the withdrawn ones.
			for _, d := range res.Claims.Demarches {
				if !slices.Contains(res.Revoked, d) {
					page.Labels = append(page.Labels, mandate.Label(d))
				}
			}
			for _, d := range res.Revoked {
				page.Revoked = append(page.Revoked, mandate.Label(d))
			}
			page.Issued, page.Expires = time.Unix(res.Claims.IssuedAt, 0), time.Unix(res.Claims.Expiry, 0)
		}
	}
	s.render(w, r, http.StatusOK, "verification", page)
	return nil
}
