package main

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"aidants/devidp"
	"aidants/internal/browsertest"
	"aidants/mail/mailpittest"
	"aidants/store"
)

// actAtDemo takes an action for the person at the demo service, as the
// aidant of c, and returns its journal index.
func actAtDemo(t *testing.T, c *http.Client, s *testServer, db *store.DB, demarche string) string {
	t.Helper()
	page, status, body := get(t, c, s.URL+"/dev/service/agir")
	if status != http.StatusOK || demandeField.FindStringSubmatch(body) == nil {
		t.Fatalf("chooser: %d at %s\n%s", status, page, body)
	}
	form := url.Values{"demande": {demandeField.FindStringSubmatch(body)[1]}, "mandat": {mandatField.FindStringSubmatch(body)[1]}, "demarche": {demarche}}
	if page, status, body = postForm(t, c, s.URL+"/agir", form); status != http.StatusOK || !strings.Contains(page, "/dev/service/retour") {
		t.Fatalf("demo service: %d at %s\n%s", status, page, html.UnescapeString(body))
	}
	var idx string
	if err := db.R.Get(&idx, `SELECT CAST(MAX(idx) AS TEXT) FROM audit_events WHERE type = 'mandate.used'`); err != nil {
		t.Fatal(err)
	}
	return idx
}

// actedWithMail is a development server sending to a mailpit, where
// Camille, signed in, made a mandate of Joséphine for argent and acted
// with it once at the demo service.
type actedWithMail struct {
	mp      *mailpittest.Server
	s       *testServer
	db      *store.DB
	camille *http.Client
	mandate string // the mandate's id
	action  string // the action's journal index
}

func newActedWithMail(t *testing.T) *actedWithMail {
	t.Helper()
	a := &actedWithMail{mp: mailpittest.Start(t, mailpittest.Options{})}
	t.Setenv("AIDANTS_SMTP_URL", "smtp://"+a.mp.SMTPAddr)
	a.s = startDev(t, "")
	a.db = openDB(t, a.s)
	a.camille = browser(t)
	signInAidant(t, a.camille, a.s, devidp.SubCamille)
	a.mandate = createOnSite(t, a.camille, a.s, devidp.SubJosephine, onSiteForm("argent"))
	a.action = actAtDemo(t, a.camille, a.s, a.db, "argent")
	return a
}

// messageTo waits for a message to addr whose subject starts with subject.
func messageTo(t *testing.T, mp *mailpittest.Server, addr, subject string) mailpittest.Message {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, sum := range mp.Messages(t) {
			if len(sum.To) == 1 && sum.To[0].Address == addr && strings.HasPrefix(sum.Subject, subject) {
				return mp.Message(t, sum.ID)
			}
		}
		if time.Now().After(deadline) {
			var got []string
			for _, sum := range mp.Messages(t) {
				got = append(got, sum.Subject)
			}
			t.Fatalf("no message %q to %s; the relay holds: %q", subject, addr, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var objectionID = regexp.MustCompile(`/structure/objections/(obj_[a-z0-9]+)`)

// TestPersonObjectsAndTheReferentAnswers: the action email's link → sign-in
// → the objection with the mandate withdrawn → the référent told, reads
// and answers → the person told and reads the answer; every mistake and
// every other person's or organisation's attempt changes nothing.
func TestPersonObjectsAndTheReferentAnswers(t *testing.T) {
	a := newActedWithMail(t)
	mp, s, db, camille, id, idx := a.mp, a.s, a.db, a.camille, a.mandate, a.action
	createOnSite(t, camille, s, devidp.SubAhmed, onSiteForm("social"))

	m := messageTo(t, mp, devidp.EmailJosephine, "Camille Martin a fait une démarche")
	link := regexp.MustCompile(`(http://\S+/mon-espace/objection/` + idx + `)\b`).FindStringSubmatch(m.Text)
	if link == nil {
		t.Fatalf("no objection link for action %s in:\n%s", idx, m.Text)
	}
	// Following the link signs the person in and comes back to it.
	person := browser(t)
	_, status, body := get(t, person, link[1])
	if status != http.StatusOK || !strings.Contains(body, `name="retour" value="/mon-espace/objection/`+idx+`"`) {
		t.Fatalf("the link without a session: %d\n%s", status, body)
	}
	page, status, body := pickIdentityAfterPost(t, person, s.URL+"/mon-espace/connexion", url.Values{"retour": {"/mon-espace/objection/" + idx}}, devidp.SubJosephine)
	if status != http.StatusOK || !strings.HasSuffix(page, "/mon-espace/objection/"+idx) || !strings.Contains(html.UnescapeString(body), "Ce n'était pas d'accord ?") {
		t.Fatalf("after FranceConnect: %d at %s\n%s", status, page, body)
	}
	objURL := s.URL + "/mon-espace/objection/" + idx
	// Mistakes: nothing recorded.
	for _, bad := range []struct {
		form url.Values
		want string
	}{
		{url.Values{}, "Choisissez ce qui ne va pas."},
		{url.Values{"raison": {"invente"}}, "Choisissez ce qui ne va pas."},
		{url.Values{"raison": {"autre"}}, "Dites-nous en quelques mots"},
		{url.Values{"raison": {"inconnu"}, "precision": {strings.Repeat("x", 2001)}}, "Dites-nous en quelques mots"},
	} {
		if _, status, body := postForm(t, person, objURL, bad.form); status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(body), bad.want) {
			t.Errorf("objection %v: %d, want 400 with %q", bad.form, status, bad.want)
		}
	}
	if n := count(t, db, `SELECT COUNT(*) FROM objections`); n != 0 {
		t.Fatalf("%d objections after mistakes", n)
	}
	// Another person cannot object to Joséphine's action; an index that
	// is not an action is unknown.
	ahmed := browser(t)
	personSignIn(t, ahmed, s, devidp.SubAhmed)
	if _, status, _ := get(t, ahmed, objURL); status != http.StatusNotFound {
		t.Errorf("another person's action: %d, want 404", status)
	}
	if _, status, _ := postForm(t, ahmed, objURL, url.Values{"raison": {"inconnu"}}); status != http.StatusNotFound {
		t.Errorf("another person's objection: %d, want 404", status)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied' AND usager_id IS NULL AND body LIKE '%/mon-espace/objection/%'`); n < 2 {
		t.Errorf("%d access.denied events for another person's action, want 2", n)
	}
	if _, status, _ := get(t, person, s.URL+"/mon-espace/objection/0"); status != http.StatusNotFound {
		t.Errorf("an index that is not an action: %d, want 404", status)
	}

	const words = "Je n'étais pas à l'accueil ce jour-là."
	_, status, body = postForm(t, person, objURL, url.Values{"raison": {"inconnu"}, "precision": {words}, "retirer": {"oui"}})
	if status != http.StatusOK || !strings.Contains(body, "Votre signalement est enregistré") || !strings.Contains(body, "Votre mandat est retiré") {
		t.Fatalf("objection: %d\n%s", status, body)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM mandates WHERE id = ? AND revoked_at IS NOT NULL AND revoked_by_kind = 'usager'`, id); n != 1 {
		t.Error("the mandate was not withdrawn with the objection")
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'usager.objected' AND body LIKE '%text_sha256%'`); n != 1 {
		t.Errorf("%d usager.objected events with the text's hash, want 1", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE body LIKE ?`, "%accueil ce jour%"); n != 0 {
		t.Errorf("the person's words are in %d events", n)
	}
	// Once only.
	if _, status, body := postForm(t, person, objURL, url.Values{"raison": {"pas_demande"}}); status != http.StatusOK ||
		!strings.Contains(body, "Vous avez déjà signalé cette démarche") || count(t, db, `SELECT COUNT(*) FROM objections`) != 1 {
		t.Errorf("a second objection: %d\n%s", status, body)
	}

	// The référent is told, without the person's identity nor words.
	told := messageTo(t, mp, devidp.EmailSacha, "Une personne conteste une démarche faite par Camille Martin")
	for _, bad := range []string{"Joséphine", "Lefèvre", "accueil ce jour"} {
		if strings.Contains(told.Text+told.HTML, bad) {
			t.Errorf("the référent's message holds %q", bad)
		}
	}
	oid := objectionID.FindStringSubmatch(told.Text)
	if oid == nil {
		t.Fatalf("no link to the objection in:\n%s", told.Text)
	}
	// A plain aidant may not read it.
	if _, status, _ := get(t, camille, s.URL+"/structure/objections/"+oid[1]); status != http.StatusForbidden {
		t.Errorf("a non-référent reads the objection: %d", status)
	}
	sacha := browser(t)
	signInAidant(t, sacha, s, devidp.SubSacha)
	_, _, list := get(t, sacha, s.URL+"/structure/objections")
	if !strings.Contains(list, "Joséphine") || !strings.Contains(html.UnescapeString(list), "Je ne connais pas cette personne") {
		t.Fatalf("the référent's list:\n%s", list)
	}
	oURL := s.URL + "/structure/objections/" + oid[1]
	_, _, one := get(t, sacha, oURL)
	if !strings.Contains(html.UnescapeString(one), words) {
		t.Fatalf("the objection's page lacks the person's words:\n%s", one)
	}
	if _, status, _ := postForm(t, sacha, oURL, url.Values{"reponse": {"  "}}); status != http.StatusBadRequest {
		t.Errorf("an empty answer: %d, want 400", status)
	}
	const answer = "Nous avons rappelé la personne et annulé la démarche auprès du service."
	if _, status, body := postForm(t, sacha, oURL, url.Values{"reponse": {answer}}); status != http.StatusOK || !strings.Contains(body, "Votre réponse est enregistrée") {
		t.Fatalf("answer: %d\n%s", status, body)
	}
	if _, status, _ := postForm(t, sacha, oURL, url.Values{"reponse": {"Autre chose"}}); status != http.StatusBadRequest {
		t.Errorf("a second answer: %d, want 400", status)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'objection.handled'`); n != 1 {
		t.Errorf("%d objection.handled events, want 1", n)
	}
	// The person is told, and reads the answer beside the action.
	messageTo(t, mp, devidp.EmailJosephine, demoName+" a répondu à votre signalement")
	_, _, space := get(t, person, s.URL+"/mon-espace")
	space = html.UnescapeString(space)
	if !strings.Contains(space, "Vous avez signalé que ce n'était pas d'accord") || !strings.Contains(space, answer) {
		t.Fatalf("the person's space does not show the answer:\n%s", space)
	}
	// The référent's statistics count it.
	_, _, st := get(t, sacha, s.URL+"/structure/statistiques")
	row := regexp.MustCompile(`(?s)id="tableau-signalements".*?« ce n'était pas d'accord »\)</td><td data-label="Nombre">(\d+)</td>`).FindStringSubmatch(html.UnescapeString(st))
	if row == nil || row[1] != "1" {
		t.Errorf("the statistics' objections: %v", row)
	}
}

// TestAidantDeclaresAnError: "J'ai fait une erreur" from the mandate page
// reaches the person by email and appears beside the action in their
// space; it can be completed, never by another organisation.
func TestAidantDeclaresAnError(t *testing.T) {
	a := newActedWithMail(t)
	mp, s, db, camille, id, idx := a.mp, a.s, a.db, a.camille, a.mandate, a.action
	_, _, page := get(t, camille, s.URL+"/mandats/"+id)
	errURL := "/mandats/" + id + "/actions/" + idx + "/erreur"
	if !strings.Contains(page, `href="`+errURL+`"`) {
		t.Fatalf("the mandate page does not offer to declare an error on action %s:\n%s", idx, page)
	}
	if _, status, _ := postForm(t, camille, s.URL+errURL, url.Values{"erreur": {"Mauvaise démarche"}}); status != http.StatusBadRequest {
		t.Errorf("without the fix: %d, want 400", status)
	}
	if _, status, _ := get(t, camille, s.URL+"/mandats/"+id+"/actions/0/erreur"); status != http.StatusNotFound {
		t.Errorf("an index that is not an action of the mandate: %d, want 404", status)
	}
	const what, fix = "J'ai déclaré le mauvais revenu.", "J'ai corrigé la déclaration le jour même."
	page, status, body := postForm(t, camille, s.URL+errURL, url.Values{"erreur": {what}, "correction": {fix}})
	if status != http.StatusOK || !strings.Contains(page, "fait=erreur") || !strings.Contains(body, "Votre déclaration d&#39;erreur est enregistrée") {
		t.Fatalf("declaration: %d at %s\n%s", status, page, body)
	}
	m := messageTo(t, mp, devidp.EmailJosephine, "Camille Martin signale une erreur")
	if !strings.Contains(m.Text, what) || !strings.Contains(m.Text, fix) || !strings.Contains(m.Text, "« Service démo (développement) »") {
		t.Errorf("the person's message:\n%s", m.Text)
	}
	clean(t, m, "argent")
	// Completed later, never edited.
	_, _, form := get(t, camille, s.URL+errURL)
	first := regexp.MustCompile(`name="complete" value="([^"]+)"`).FindStringSubmatch(form)
	if first == nil {
		t.Fatalf("the second form does not complete the first declaration:\n%s", form)
	}
	if _, status, _ := postForm(t, camille, s.URL+errURL, url.Values{"erreur": {"Et la date aussi."}, "correction": {"Corrigée."}, "complete": {"err_inconnu"}}); status != http.StatusBadRequest {
		t.Errorf("completing an unknown declaration: %d, want 400", status)
	}
	postForm(t, camille, s.URL+errURL, url.Values{"erreur": {"Et la date aussi."}, "correction": {"Corrigée."}, "complete": {first[1]}})
	if n := count(t, db, `SELECT COUNT(*) FROM error_declarations WHERE completes = ?`, first[1]); n != 1 {
		t.Errorf("%d completions, want 1", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'action.error_declared' AND body NOT LIKE ?`, "%mauvais revenu%"); n != 2 {
		t.Errorf("%d action.error_declared events without the text, want 2", n)
	}
	// Another organisation's aidant cannot.
	alex := browser(t)
	signInAidant(t, alex, s, devidp.SubAlex)
	var second string
	db.R.Get(&second, `SELECT id FROM organisations WHERE siret = ?`, secondSIRET)
	postForm(t, alex, s.URL+"/structures", url.Values{"organisation": {second}})
	if _, status, _ := postForm(t, alex, s.URL+errURL, url.Values{"erreur": {"x"}, "correction": {"y"}}); status != http.StatusNotFound {
		t.Errorf("another organisation declares: %d, want 404", status)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM error_declarations`); n != 2 {
		t.Errorf("%d declarations, want 2", n)
	}
	// The person sees both beside the action.
	person := browser(t)
	_, _, space := personSignIn(t, person, s, devidp.SubJosephine)
	space = html.UnescapeString(space)
	if !strings.Contains(space, "L'aidant a déclaré une erreur") || !strings.Contains(space, what) || !strings.Contains(space, "Complément à la déclaration d'erreur") {
		t.Fatalf("the person's space does not show the declarations:\n%s", space)
	}
	// Auditors see the declarations through their API, without the texts.
	tok := addAuditor(t, s, "--organisations", demoSIRET).token(t, s)
	r := queryEvents(t, s, tok, "type=action.error_declared", "application/json")
	var p eventsPage
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &p) != nil || len(p.Events) != 2 {
		t.Fatalf("the auditor's query: %d\n%s", r.status, r.body)
	}
	if strings.Contains(r.body, "mauvais revenu") || !strings.Contains(r.body, "what_sha256") {
		t.Errorf("the auditor's events:\n%s", r.body)
	}
}

// TestPersonTurnsActionMailsOff: the switch in "Mon espace" is journaled
// and stops the action messages.
func TestPersonTurnsActionMailsOff(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Options{})
	t.Setenv("AIDANTS_SMTP_URL", "smtp://"+mp.SMTPAddr)
	s := startDev(t, "")
	db := openDB(t, s)
	camille := browser(t)
	signInAidant(t, camille, s, devidp.SubCamille)
	createOnSite(t, camille, s, devidp.SubJosephine, onSiteForm("argent"))
	// A return address outside the space is ignored: the person lands
	// in her space.
	for _, retour := range []string{"//evil.example/x", "https://evil.example/", "/mandats", "/mon-espace/../tableau-de-bord"} {
		stranger := browser(t)
		if page, _, _ := pickIdentityAfterPost(t, stranger, s.URL+"/mon-espace/connexion", url.Values{"retour": {retour}}, devidp.SubJosephine); page != s.URL+"/mon-espace" {
			t.Errorf("sign-in with retour %q lands at %s", retour, page)
		}
	}
	person := browser(t)
	_, _, space := personSignIn(t, person, s, devidp.SubJosephine)
	if !strings.Contains(space, "Ne plus recevoir ces courriels") {
		t.Fatalf("no switch in the space:\n%s", space)
	}
	if _, status, _ := postForm(t, person, s.URL+"/mon-espace/courriels", url.Values{"courriels": {"peut-etre"}}); status != http.StatusBadRequest {
		t.Errorf("a bad value: %d, want 400", status)
	}
	_, _, space = postForm(t, person, s.URL+"/mon-espace/courriels", url.Values{"courriels": {"non"}})
	if !strings.Contains(space, "vous ne recevrez plus de courriel à chaque démarche") || !strings.Contains(space, "Recevoir un courriel à chaque démarche") {
		t.Fatalf("after turning off:\n%s", space)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'usager.notifications_changed'`); n != 1 {
		t.Errorf("%d usager.notifications_changed events, want 1", n)
	}
	before := len(messageList(t, mp))
	actAtDemo(t, camille, s, db, "argent")
	time.Sleep(3 * time.Second)
	if got := len(messageList(t, mp)); got != before || count(t, db, `SELECT COUNT(*) FROM mail_actions`) != 0 {
		t.Fatalf("an action message after turning them off (%d → %d messages)", before, got)
	}
	postForm(t, person, s.URL+"/mon-espace/courriels", url.Values{"courriels": {"oui"}})
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'usager.notifications_changed'`); n != 2 {
		t.Errorf("%d usager.notifications_changed events after turning on again, want 2", n)
	}
	actAtDemo(t, camille, s, db, "argent")
	messageTo(t, mp, devidp.EmailJosephine, "Camille Martin a fait une démarche")
}

func messageList(t *testing.T, mp *mailpittest.Server) []mailpittest.Summary {
	t.Helper()
	time.Sleep(1500 * time.Millisecond) // what was queued has left
	return mp.Messages(t)
}

// TestBrowserObjectionJourney, in Chromium: the link of the action email
// → FranceConnect → the objection with the mandate withdrawn → the
// référent reads it and answers → the person reads the answer.
func TestBrowserObjectionJourney(t *testing.T) {
	a := newActedWithMail(t)
	mp, s, db, id := a.mp, a.s, a.db, a.mandate
	m := messageTo(t, mp, devidp.EmailJosephine, "Camille Martin a fait une démarche")
	link := regexp.MustCompile(`(http://\S+/mon-espace/objection/\d+)`).FindStringSubmatch(m.Text)
	if link == nil {
		t.Fatalf("no objection link in:\n%s", m.Text)
	}

	ctx := browsertest.New(t, 120*time.Second)
	person := browsertest.Incognito(t, ctx)
	err := chromedp.Do(person,
		chromedp.Navigate(link[1]),
		chromedp.Click(chromedp.CSS(`form[action="/mon-espace/connexion"] button`), chromedp.NodeVisible),
		pickAt(person, devidp.SubJosephine),
		chromedp.WaitVisible(chromedp.CSS(`input[name="raison"][value="inconnu"]`)),
		chromedp.Click(chromedp.CSS(`label[for="raison-inconnu"]`), chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.ID("precision"), "Je ne connais pas cette personne."),
		chromedp.Click(chromedp.CSS(`label[for="retirer"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`form[action^="/mon-espace/objection/"] button[type="submit"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`div.success`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, person); !strings.Contains(text, "Votre signalement est enregistré") || !strings.Contains(text, "Votre mandat est retiré") {
		t.Fatalf("after the objection:\n%s", text)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM mandates WHERE id = ? AND revoked_at IS NOT NULL`, id); n != 1 {
		t.Error("the mandate was not withdrawn")
	}

	told := messageTo(t, mp, devidp.EmailSacha, "Une personne conteste")
	oid := objectionID.FindStringSubmatch(told.Text)
	if oid == nil {
		t.Fatalf("no objection link in:\n%s", told.Text)
	}
	referent := browsertest.Incognito(t, ctx)
	browserSignIn(t, referent, s, devidp.SubSacha)
	const answer = "Nous avons annulé la démarche et rappelé la personne."
	err = chromedp.Do(referent,
		chromedp.Navigate(s.URL+"/structure"),
		chromedp.Click(chromedp.CSS(`a[href="/structure/objections"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`a[href="/structure/objections/`+oid[1]+`"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.ID("reponse")),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, referent); !strings.Contains(text, "Je ne connais pas cette personne.") || !strings.Contains(text, "Joséphine") {
		t.Fatalf("the objection as the référent reads it:\n%s", text)
	}
	err = chromedp.Do(referent,
		chromedp.SendKeys(chromedp.ID("reponse"), answer),
		chromedp.Click(chromedp.CSS(`form[action^="/structure/objections/"] button[type="submit"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`div.success`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	messageTo(t, mp, devidp.EmailJosephine, demoName+" a répondu")
	err = chromedp.Do(person,
		chromedp.Navigate(s.URL+"/mon-espace"),
		chromedp.WaitVisible(chromedp.CSS(`ol.history`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, person); !strings.Contains(text, "Réponse de la structure") || !strings.Contains(text, answer) {
		t.Fatalf("the person's space does not show the answer:\n%s", text)
	}
}
