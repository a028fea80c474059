package mail_test

import (
	"strings"
	"testing"
	"time"

	"aidants/mail"
	"aidants/mail/mailpittest"
	"aidants/store"
	"aidants/store/storetest"
)

// TestRelaysOverTLSAndSTARTTLS delivers through each way a relay is
// reached, against a real server that requires it: TLS from the first
// byte (smtps://) and STARTTLS (smtp://), with authentication, trusting
// the CA file; and refuses to send where it cannot be sure of the relay:
// an unknown authority, or a remote relay that does not offer STARTTLS.
// Errors never show the password.
func TestRelaysOverTLSAndSTARTTLS(t *testing.T) {
	const password = "Secr3t-Passw0rd"
	for _, c := range []struct {
		name    string
		opts    mailpittest.Options
		scheme  string
		host    string // dialled under this name instead of 127.0.0.1 (STARTTLS only)
		ca      bool
		refused string // the error that keeps the message, "" if delivered
	}{
		{name: "implicit TLS", opts: mailpittest.Options{TLS: mailpittest.ImplicitTLS, Auth: true}, scheme: "smtps", ca: true},
		{name: "STARTTLS required by the relay", opts: mailpittest.Options{TLS: mailpittest.STARTTLS, Auth: true}, scheme: "smtp", ca: true},
		{name: "STARTTLS to a remote name", opts: mailpittest.Options{TLS: mailpittest.STARTTLS, Auth: true}, scheme: "smtp", host: mailpittest.Hostname, ca: true},
		{name: "plain on loopback", opts: mailpittest.Options{Auth: true}, scheme: "smtp"},
		{name: "unknown authority", opts: mailpittest.Options{TLS: mailpittest.ImplicitTLS, Auth: true}, scheme: "smtps", refused: "certificate"},
		{name: "remote relay without STARTTLS", opts: mailpittest.Options{Auth: true}, scheme: "smtp", host: mailpittest.Hostname, refused: "STARTTLS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, storetest.Open(t, store.SQLite))
			mp := mailpittest.Start(t, c.opts)
			ca := ""
			if c.ca {
				ca = mp.CAFile
			}
			url := c.scheme + "://camille:" + password + "@" + mp.SMTPAddr
			if c.host != "" {
				url = c.scheme + "://camille:" + password + "@" + c.host + ":25"
			}
			smtp, err := mail.NewSMTP(url, ca)
			if err != nil {
				t.Fatal(err)
			}
			if c.host != "" {
				mail.DialTo(smtp, mp.SMTPAddr)
			}
			if strings.Contains(smtp.String(), password) {
				t.Fatalf("String() shows the password: %s", smtp)
			}
			s := e.sender(t, smtp, mail.SenderOptions{})
			subject := "Essai : " + c.name
			e.queue(t, plain("dominique@exemple.fr", subject))
			if c.refused != "" {
				deliver(t, s, mail.Round{Claimed: 1, Failed: 1})
				var q mail.Queued
				for _, r := range e.rows(t) {
					if r.Subject == subject {
						q = r
					}
				}
				t.Logf("kept, with the error: %s", q.LastError)
				if !strings.Contains(q.LastError, c.refused) || strings.Contains(q.LastError, password) {
					t.Fatalf("last error %q, want it to say %q without the password", q.LastError, c.refused)
				}
				time.Sleep(100 * time.Millisecond)
				if n := len(mp.Messages(t)); n != 0 {
					t.Fatalf("%d messages reached a relay that could not be trusted", n)
				}
				return
			}
			deliver(t, s, mail.Round{Claimed: 1, Sent: 1})
			got := mp.WaitMessages(t, 1, 5*time.Second)
			if len(got) != 1 || got[0].Subject != subject || got[0].Username != "camille" {
				t.Fatalf("relay got %+v, want %q authenticated as camille", got, subject)
			}
		})
	}
}

func TestSMTPURLIsChecked(t *testing.T) {
	for _, u := range []string{"https://u:Secr3t@smtp.example.fr", "smtp://u:Secr3t@:25", "smtp://u:Secr3t@smtp.example.fr:0", "smtp://u:Secr3t@smtp example.fr"} {
		_, err := mail.NewSMTP(u, "")
		if err == nil || strings.Contains(err.Error(), "Secr3t") {
			t.Errorf("NewSMTP(%q) = %v, want an error without the password", u, err)
		}
	}
	s, err := mail.NewSMTP("smtps://u:Secr3t@smtp.example.fr", "")
	if err != nil || s.String() != "smtp smtp.example.fr:465 (TLS)" {
		t.Errorf("smtps default port: %v %v", s, err)
	}
	s, err = mail.NewSMTP("smtp://smtp.example.fr", "")
	if err != nil || s.String() != "smtp smtp.example.fr:587 (STARTTLS)" {
		t.Errorf("smtp default port: %v %v", s, err)
	}
	s, err = mail.NewSMTP("smtp://localhost:1025", "")
	if err != nil || s.String() != "smtp localhost:1025 (STARTTLS if offered (loopback))" {
		t.Errorf("loopback: %v %v", s, err)
	}
}
