package main

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"aidants/devidp"
	"aidants/mail/mailpittest"
	"aidants/mandate"
)

// mailed waits for the relay to hold n messages and returns the newest
// ones first as mail clients show them.
func mailed(t *testing.T, mp *mailpittest.Server, n int) []mailpittest.Message {
	t.Helper()
	sums := mp.WaitMessages(t, n, 20*time.Second)
	if len(sums) != n {
		t.Fatalf("%d messages at the relay, want %d", len(sums), n)
	}
	out := make([]mailpittest.Message, len(sums))
	for i, s := range sums {
		out[i] = mp.Message(t, s.ID)
	}
	return out
}

// newest is the message most recently received.
func newest(t *testing.T, mp *mailpittest.Server, n int) mailpittest.Message {
	t.Helper()
	ms := mailed(t, mp, n)
	last := ms[0]
	for _, m := range ms {
		if m.Date.After(last.Date) || (m.Date.Equal(last.Date) && m.ID > last.ID) {
			last = m
		}
	}
	return last
}

// clean: no token, no pseudonymous id, no démarche the person did not give.
func clean(t *testing.T, m mailpittest.Message, given ...string) {
	t.Helper()
	body := m.Subject + m.Text + m.HTML
	for _, bad := range []string{"man_", "usa_", "aid_", "org_", "svc_", "dra_", "jeton=", "code="} {
		if strings.Contains(body, bad) {
			t.Errorf("message %q holds %q", m.Subject, bad)
		}
	}
	for _, d := range mandate.Demarches {
		if !contains(given, d.Code) && strings.Contains(body, d.Label) {
			t.Errorf("message %q names the démarche %q the person did not give", m.Subject, d.Label)
		}
	}
}

var objectionLink = regexp.MustCompile(`/mon-espace/objection/(\d+)`)

// TestPersonIsToldByEmail drives the service with a real mail server as
// its relay: a mandate signed, an action taken, a second one within the
// hour, the mandate withdrawn, each told to the person as they would read
// it.
func TestPersonIsToldByEmail(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Options{})
	t.Setenv("AIDANTS_SMTP_URL", "smtp://"+mp.SMTPAddr)
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	id := createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent", "social"))

	m := newest(t, mp, 1)
	if len(m.To) != 1 || m.To[0].Address != devidp.EmailJosephine || m.Subject != "Vous avez signé un mandat avec "+demoName {
		t.Fatalf("mandate message to %+v: %q", m.To, m.Subject)
	}
	for _, want := range []string{"Bonjour Joséphine", "vous avez autorisé Camille Martin, de " + demoName,
		"- Argent - Impôts - Consommation", "- Social - Santé", "n° " + mandate.Ref(id), s.URL + "/mon-espace"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("mandate message lacks %q:\n%s", want, m.Text)
		}
	}
	clean(t, m, "argent", "social")

	// An action at the demo service: told at once, with the way to object.
	act := func() {
		t.Helper()
		page, status, body := get(t, c, s.URL+"/dev/service/agir")
		if status != http.StatusOK || demandeField.FindStringSubmatch(body) == nil {
			t.Fatalf("chooser: %d at %s\n%s", status, page, body)
		}
		form := url.Values{"demande": {demandeField.FindStringSubmatch(body)[1]}, "mandat": {mandatField.FindStringSubmatch(body)[1]}, "demarche": {"argent"}}
		if page, status, body = postForm(t, c, s.URL+"/agir", form); status != http.StatusOK || !strings.Contains(page, "/dev/service/retour") {
			t.Fatalf("demo service: %d at %s\n%s", status, page, html.UnescapeString(body))
		}
	}
	act()
	m = newest(t, mp, 2)
	if m.Subject != "Camille Martin a fait une démarche pour vous sur Service démo (développement)" {
		t.Fatalf("action message: %q\n%s", m.Subject, m.Text)
	}
	for _, want := range []string{"Camille Martin, de " + demoName + ", a ouvert « Service démo (développement) » pour vous, pour la démarche « Argent - Impôts - Consommation »",
		"Ce n'était pas d'accord ? Dites-le ici : " + s.URL + "/mon-espace/objection/", s.URL + "/mon-espace#courriels"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("action message lacks %q:\n%s", want, m.Text)
		}
	}
	clean(t, m, "argent", "social")
	db := openDB(t, s)
	if l := objectionLink.FindStringSubmatch(m.Text); l == nil || count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'mandate.used' AND idx = ?`, l[1]) != 1 {
		t.Errorf("the objection link %v does not name the action's journal index", l)
	}

	// A second action within the hour waits for the grouped message.
	act()
	time.Sleep(3 * time.Second)
	if n := len(mp.Messages(t)); n != 2 {
		t.Fatalf("%d messages after a second action within the hour, want still 2", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM mail_actions`); n != 1 {
		t.Fatalf("%d actions waiting for the grouped message, want 1", n)
	}

	// The aidant withdraws the mandate, with a reason.
	if _, status, body := postForm(t, c, s.URL+"/mandats/"+id+"/revoquer", url.Values{"motif": {"demande_personne"}}); status != http.StatusOK {
		t.Fatalf("revoke: %d\n%s", status, body)
	}
	m = newest(t, mp, 3)
	if m.Subject != "Votre mandat avec "+demoName+" est retiré" {
		t.Fatalf("withdrawal message: %q", m.Subject)
	}
	for _, want := range []string{"votre mandat n° " + mandate.Ref(id) + " avec " + demoName + " a été retiré par Camille Martin, de " + demoName,
		"Raison donnée : La personne l'a demandé."} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("withdrawal message lacks %q:\n%s", want, m.Text)
		}
	}
	clean(t, m, "argent", "social")
}

// TestConsentLinkSentByEmail: the aidant sends the remote consent link to
// the address the person gives; the message names the aidant and the
// organisation and carries the link, which the person can use.
func TestConsentLinkSentByEmail(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Options{})
	t.Setenv("AIDANTS_SMTP_URL", "smtp://"+mp.SMTPAddr)
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	_, status, body := postForm(t, c, s.URL+"/mandats/nouveau", url.Values{"demarches": {"logement"}, "duree": {"1m"}, "methode": {"remote"}})
	jeton := regexp.MustCompile(`name="jeton" value="([^"]+)"`).FindStringSubmatch(body)
	action := regexp.MustCompile(`action="(/brouillons/[^/"]+/envoyer-lien)"`).FindStringSubmatch(body)
	if status != http.StatusOK || jeton == nil || action == nil {
		t.Fatalf("remote draft page has no sending form: %d\n%s", status, body)
	}
	send := func(token, to string) (int, string) {
		_, status, body := postForm(t, c, s.URL+action[1], url.Values{"jeton": {token}, "courriel": {to}})
		return status, html.UnescapeString(body)
	}
	db := openDB(t, s)
	// Mistakes send nothing and journal nothing.
	for _, bad := range []struct{ token, to, want string }{
		{jeton[1], "pas-une-adresse", "n'est pas une adresse électronique valable"},
		{jeton[1], "Ahmed <ahmed@example.org>", "n'est pas une adresse électronique valable"},
		{"un-autre-jeton", devidp.EmailAhmed, "Ce lien a déjà servi, a expiré, ou n'est pas celui de ce projet de mandat"},
	} {
		if status, body := send(bad.token, bad.to); status != http.StatusBadRequest || !strings.Contains(body, bad.want) {
			t.Errorf("send %q to %q: %d, want 400 with %q\n%s", bad.token, bad.to, status, bad.want, body)
		}
	}
	if status, body := send(jeton[1], devidp.EmailAhmed); status != http.StatusOK || !strings.Contains(body, "Le lien a été envoyé par courriel à <strong>"+devidp.EmailAhmed+"</strong>") {
		t.Fatalf("send: %d\n%s", status, body)
	}
	m := newest(t, mp, 1)
	if m.To[0].Address != devidp.EmailAhmed || m.Subject != "Camille Martin, de "+demoName+", vous demande votre accord" ||
		!strings.Contains(m.Text, "ces démarches en ligne : Logement") {
		t.Fatalf("link message to %+v: %q\n%s", m.To, m.Subject, m.Text)
	}
	link := regexp.MustCompile(`(http://\S+/consentement\?jeton=\S+)`).FindStringSubmatch(m.Text)
	if link == nil {
		t.Fatalf("no consent link in:\n%s", m.Text)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'mandate.consent_link_sent'`); n != 1 {
		t.Errorf("%d consent_link_sent events, want 1", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE body LIKE ?`, "%"+devidp.EmailAhmed+"%"); n != 0 {
		t.Errorf("the address is in %d events", n)
	}
	// The person opens it.
	person := browser(t)
	if _, status, body := get(t, person, link[1]); status != http.StatusOK || !strings.Contains(body, "Votre accord est demandé") {
		t.Fatalf("the emailed link: %d\n%s", status, body)
	}
	// At most three sends of one link.
	send(jeton[1], devidp.EmailAhmed)
	send(jeton[1], devidp.EmailAhmed)
	if status, body := send(jeton[1], devidp.EmailAhmed); status != http.StatusBadRequest || !strings.Contains(body, "déjà été envoyé 3 fois") {
		t.Errorf("fourth send: %d\n%s", status, body)
	}
	mailed(t, mp, 3)
	// Another organisation's aidant cannot send it.
	other := browser(t)
	signInAidant(t, other, s, devidp.SubAlex)
	if _, status, _ := postForm(t, other, s.URL+action[1], url.Values{"jeton": {jeton[1]}, "courriel": {devidp.EmailAhmed}}); status == http.StatusOK {
		t.Errorf("an aidant of another organisation sent the link")
	}
}

// TestDevelopmentMailboxShowsTheMessages: without a relay, development mode
// keeps the messages in its own mailbox, linked from its banner.
func TestDevelopmentMailboxShowsTheMessages(t *testing.T) {
	t.Setenv("AIDANTS_SMTP_URL", "")
	s := startDev(t, "")
	c := browser(t)
	_, _, home := get(t, c, s.URL+"/")
	if !strings.Contains(home, `href="/dev/courriels"`) {
		t.Fatalf("the development banner does not link the mailbox:\n%s", home)
	}
	signInAidant(t, c, s, devidp.SubCamille)
	createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, status, body := get(t, c, s.URL+"/dev/courriels")
		body = html.UnescapeString(body)
		if status == http.StatusOK && strings.Contains(body, "Vous avez signé un mandat avec "+demoName) && strings.Contains(body, devidp.EmailJosephine) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mailbox does not show the mandate message: %d\n%s", status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestKilledServerDeliversQueuedMessagesAfterRestart: the relay is down,
// mandates are signed (their messages queued and failing), the server is
// killed (SIGKILL); once the relay and the server are back, every message
// is delivered, once.
func TestKilledServerDeliversQueuedMessagesAfterRestart(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Options{})
	mp.Stop() // the relay is down; its address is kept for Restart
	dir, listen := t.TempDir(), freeAddr(t)
	env := []string{"AIDANTS_SMTP_URL=smtp://" + mp.SMTPAddr}
	args := []string{"serve", "--dev", "--data", dir, "--listen", listen}
	u, cmd := spawn(t, env, args...)
	s := &testServer{URL: u, Data: dir}
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	const n = 3
	for _, d := range []string{"argent", "social", "logement"}[:n] {
		createOnSite(t, c, s, devidp.SubJosephine, onSiteForm(d))
	}
	db := openDB(t, s)
	deadline := time.Now().Add(20 * time.Second)
	for count(t, db, `SELECT COUNT(*) FROM mail_outbox WHERE attempts >= 1 AND sent_at IS NULL AND claim IS NULL`) != n {
		if time.Now().After(deadline) {
			t.Fatalf("the %d messages were not tried while the relay was down", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	mp.Restart(t)
	spawn(t, env, args...)
	ms := mailed(t, mp, n)
	ids := map[string]bool{}
	for _, m := range ms {
		ids[m.MessageID] = true
		if m.To[0].Address != devidp.EmailJosephine || !strings.HasPrefix(m.Subject, "Vous avez signé un mandat avec") {
			t.Errorf("message to %+v: %q", m.To, m.Subject)
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct messages, want %d", len(ids), n)
	}
	deadline = time.Now().Add(10 * time.Second)
	for count(t, db, `SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NOT NULL`) != n {
		if time.Now().After(deadline) {
			t.Fatal("the outbox does not record the deliveries")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if got := len(mp.Messages(t)); got != n {
		t.Errorf("%d messages at the relay after the deliveries were recorded, want %d", got, n)
	}
}
