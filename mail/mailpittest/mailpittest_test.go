package mailpittest_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/smtp"
	"os"
	"strings"
	"testing"
	"time"

	"aidants/mail/mailpittest"
)

// TestHarnessRunsARealMailpit checks what the harness promises, with the
// standard library's SMTP client on the other side: STARTTLS to the
// certificate of the test's own authority, authentication, the message
// read back through the API with its parts decoded, a refused recipient,
// and a restart that keeps the mailbox and the port.
func TestHarnessRunsARealMailpit(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Options{TLS: mailpittest.STARTTLS, Auth: true, AllowedRecipients: `@exemple\.fr$`})

	pem, err := os.ReadFile(mp.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("CAFile holds no certificate")
	}
	send := func(to, subject string) error {
		c, err := smtp.Dial(mp.SMTPAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: roots}); err != nil {
			return err
		}
		if err := c.Auth(smtp.PlainAuth("", "camille", "mot-de-passe", "127.0.0.1")); err != nil {
			return err
		}
		if err := c.Mail("ne-pas-repondre@aidants.test"); err != nil {
			return err
		}
		if err := c.Rcpt(to); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		w.Write([]byte("Message-ID: <un@aidants.test>\r\nFrom: ne-pas-repondre@aidants.test\r\nTo: " + to + "\r\nSubject: " + subject +
			"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nD=C3=A9marche faite pour vous.\r\n"))
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	if err := send("personne@exemple.fr", "Bonjour"); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := send("personne@ailleurs.example", "Refusé"); err == nil || !strings.HasPrefix(err.Error(), "550") {
		t.Fatalf("a recipient outside AllowedRecipients: err = %v, want a 550 refusal", err)
	}

	ms := mp.WaitMessages(t, 1, 5*time.Second)
	if len(ms) != 1 || ms[0].MessageID != "un@aidants.test" || ms[0].Subject != "Bonjour" || ms[0].Username != "camille" {
		t.Fatalf("messages = %+v, want the one sent by camille", ms)
	}
	m := mp.Message(t, ms[0].ID)
	if strings.TrimSpace(m.Text) != "Démarche faite pour vous." || m.To[0].Address != "personne@exemple.fr" {
		t.Fatalf("message = %+v", m)
	}
	if h := mp.Headers(t, ms[0].ID); h["Subject"][0] != "Bonjour" {
		t.Fatalf("headers = %v", h)
	}

	addr := mp.SMTPAddr
	mp.Stop()
	if c, err := smtp.Dial(addr); err == nil {
		c.Close()
		t.Fatal("SMTP still answers after Stop")
	}
	mp.Restart(t)
	if mp.SMTPAddr != addr {
		t.Fatalf("SMTP moved from %s to %s across a restart", addr, mp.SMTPAddr)
	}
	if n := len(mp.Messages(t)); n != 1 {
		t.Fatalf("%d messages after restart, want the 1 kept", n)
	}
}
