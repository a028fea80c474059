package mail_test

import (
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"aidants/config"
	"aidants/mail"
	"aidants/mail/mailpittest"
	"aidants/store"
	"aidants/store/storetest"
)

// TestDevMailboxShowsMessagesEscaped runs development mode without a
// relay: a queued message lands in the mailbox, whose pages list and show
// it in French, read back from the bytes a relay would have received,
// every piece of the message escaped (its HTML only inside a sandboxed
// frame).
func TestDevMailboxShowsMessagesEscaped(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	e := newEnv(t, db)
	m, err := mail.FromConfig(e.log, config.Mail{}, true, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if m.Mailbox == nil || !strings.Contains(m.Relay, mail.DevMailboxPath) {
		t.Fatalf("development mode without a relay: %+v", m)
	}
	srv := httptest.NewServer(m.Mailbox)
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		return resp.StatusCode, string(b)
	}
	if code, page := get(mail.DevMailboxPath); code != 200 || !strings.Contains(page, "Aucun courriel pour l'instant.") {
		t.Fatalf("empty mailbox: %d\n%s", code, page)
	}

	const org = `<script>alert("org")</script>`
	e.outbox = m.Outbox
	e.queue(t, signedMessage(t, "dominique@exemple.fr", org))
	deliver(t, m.Sender, mail.Round{Claimed: 1, Sent: 1})
	e.clock.Add(time.Minute)
	e.queue(t, plain("claude@exemple.fr", "Une démarche a été faite pour vous"))
	deliver(t, m.Sender, mail.Round{Claimed: 1, Sent: 1})
	rows := e.rows(t)
	if len(rows) != 2 || rows[0].To != "dominique@exemple.fr" {
		t.Fatalf("outbox = %+v", rows)
	}

	code, list := get(mail.DevMailboxPath)
	if code != 200 {
		t.Fatalf("list: %d", code)
	}
	if strings.Contains(list, "<script>") {
		t.Fatalf("the list shows a subject unescaped:\n%s", list)
	}
	for _, want := range []string{"Courriels envoyés", "dominique@exemple.fr", "claude@exemple.fr",
		html.EscapeString("Un mandat a été signé pour vous avec " + org), "Une démarche a été faite pour vous"} {
		if !strings.Contains(list, want) {
			t.Errorf("the list lacks %q:\n%s", want, list)
		}
	}
	if strings.Index(list, "claude@") > strings.Index(list, "dominique@") {
		t.Errorf("the list is not newest first:\n%s", list)
	}
	link := regexp.MustCompile(`href="(` + mail.DevMailboxPath + `/\d+)">Un mandat`).FindStringSubmatch(list)
	if link == nil {
		t.Fatalf("no link to the message in:\n%s", list)
	}

	code, page := get(link[1])
	if code != 200 {
		t.Fatalf("message page: %d", code)
	}
	if strings.Contains(page, "<script>") {
		t.Fatalf("the message page shows the message unescaped:\n%s", page)
	}
	for _, want := range []string{
		"<h1>" + html.EscapeString("Un mandat a été signé pour vous avec "+org) + "</h1>",
		html.EscapeString(rows[0].MessageID),
		"Aidants (développement)", // the sender of development mode
		// the text part, decoded from quoted-printable, escaped once
		html.EscapeString("Camille Martin, de " + org + ", peut désormais faire pour vous ces démarches : Argent, Famille et Logement."),
		// the HTML part in a frame with no script, escaped once into srcdoc
		`<iframe sandbox title="Version HTML du courriel" srcdoc="`,
		html.EscapeString(html.EscapeString(org)),
		`<a href="https://aidants.test/mon-espace">https://aidants.test/mon-espace</a>`,
		"Source du message", "multipart/alternative",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the message page lacks %q:\n%s", want, page)
		}
	}

	if code, page := get(mail.DevMailboxPath + "/999"); code != http.StatusNotFound || !strings.Contains(page, "Courriel introuvable") {
		t.Errorf("unknown message: %d\n%s", code, page)
	}
	if code, _ := get(mail.DevMailboxPath + "/x"); code != http.StatusNotFound {
		t.Errorf("a number that is not one: %d", code)
	}
	if got := m.Mailbox.Messages(); len(got) != 2 || got[0].Text == "" || got[0].HTML == "" || got[1].HTML != "" {
		t.Errorf("Messages() = %+v", got)
	}
}

// TestFromConfigFollowsTheMailTable: a relay when one is set (described
// without its password), the development mailbox in development mode,
// and nothing but ErrOff otherwise.
func TestFromConfigFollowsTheMailTable(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	m, err := mail.FromConfig(e.log, config.Mail{SMTPURL: "smtps://u:Secr3t@smtp.example.fr", From: from}, false, quiet)
	if err != nil || m.Mailbox != nil || m.Sender == nil || m.Outbox == nil || m.Relay != "smtp smtp.example.fr:465 (TLS)" {
		t.Fatalf("with a relay: %+v, %v", m, err)
	}
	m, err = mail.FromConfig(e.log, config.Mail{SMTPURL: "smtp://127.0.0.1:1025"}, true, quiet)
	if err != nil || m.Mailbox != nil || m.Relay != "smtp 127.0.0.1:1025 (STARTTLS if offered (loopback))" {
		t.Fatalf("development mode with a relay: %+v, %v", m, err)
	}
	if _, err := mail.FromConfig(e.log, config.Mail{}, false, quiet); !errors.Is(err, mail.ErrOff) {
		t.Fatalf("no relay outside development: %v, want ErrOff", err)
	}
}

// TestConfiguredRelayDelivers goes from a configuration file and the
// environment to a message at the relay: the [mail] table validates, the
// relay URL with its password comes from AIDANTS_SMTP_URL, the CA file is
// trusted, and the message goes over TLS, authenticated, from the
// configured sender.
func TestConfiguredRelayDelivers(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Options{TLS: mailpittest.ImplicitTLS, Auth: true})
	cfg, err := config.Parse([]byte("[mail]\nfrom = \"Aidants Lyon <ne-pas-repondre@lyon.aidants.test>\"\nca_file = \"" + mp.CAFile + "\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ApplyEnv(func(k string) (string, bool) {
		if k == "AIDANTS_SMTP_URL" {
			return "smtps://relais:Secr3t@" + mp.SMTPAddr, true
		}
		return "", false
	})
	if err := cfg.Validate(); err != nil && strings.Contains(err.Error(), "mail.") {
		t.Fatalf("the [mail] table does not validate: %v", err)
	}
	e := newEnv(t, storetest.Open(t, store.SQLite))
	m, err := mail.FromConfig(e.log, cfg.Mail, false, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.Relay, "Secr3t") {
		t.Fatalf("the relay's description shows the password: %s", m.Relay)
	}
	e.outbox = m.Outbox
	e.queue(t, plain("dominique@exemple.fr", "Une démarche a été faite pour vous"))
	deliver(t, m.Sender, mail.Round{Claimed: 1, Sent: 1})
	got := mp.WaitMessages(t, 1, 5*time.Second)
	if got[0].From.Address != "ne-pas-repondre@lyon.aidants.test" || got[0].From.Name != "Aidants Lyon" || got[0].Username != "relais" ||
		!strings.HasSuffix(got[0].MessageID, "@lyon.aidants.test") {
		t.Fatalf("relay got %+v", got[0])
	}
}
