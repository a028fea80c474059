package mail

import (
	"errors"
	"fmt"
	"log/slog"

	"aidants/audit"
	"aidants/config"
)

// DevFrom is the sender of development mode when mail.from is not set.
const DevFrom = `"Aidants (développement)" <ne-pas-repondre@aidants.localhost>`

// ErrOff is returned by FromConfig outside development mode when no relay
// is configured: the caller decides whether to run without email (with a
// nil Outbox, which queues nothing) or to refuse to start.
var ErrOff = errors.New("mail: no SMTP relay (mail.smtp_url or AIDANTS_SMTP_URL): nobody is told by email")

// Setup is outgoing mail as the configuration asks.
type Setup struct {
	// Outbox is what the domain code queues into.
	Outbox *Outbox
	// Sender delivers the outbox: run Sender.Run in the background for
	// the life of the process, and register its metrics.
	Sender *Sender
	// Mailbox is the development mailbox (development mode without an
	// SMTP URL), to mount at DevMailboxPath; nil otherwise.
	Mailbox *DevMailbox
	// Relay describes where messages go, without credentials, for the
	// start-up log.
	Relay string
}

// FromConfig builds outgoing mail from the [mail] table (validated by
// config.Validate): to the SMTP relay of c.SMTPURL when set; otherwise, in
// development mode, to a development mailbox; otherwise ErrOff.
func FromConfig(log *audit.Log, c config.Mail, dev bool, logger *slog.Logger) (*Setup, error) {
	from := c.From
	if from == "" && dev {
		from = DevFrom
	}
	var t Transport
	s := &Setup{}
	switch {
	case c.Off:
		return nil, ErrOff
	case c.SMTPURL != "":
		smtp, err := NewSMTP(c.SMTPURL, c.CAFile)
		if err != nil {
			return nil, err
		}
		t, s.Relay = smtp, smtp.String()
	case dev:
		s.Mailbox = NewDevMailbox()
		t, s.Relay = s.Mailbox, "the development mailbox at "+DevMailboxPath
	default:
		return nil, ErrOff
	}
	var err error
	if s.Outbox, err = NewOutbox(from); err != nil {
		return nil, fmt.Errorf("mail.from: %w", err)
	}
	if s.Sender, err = NewSender(log, SenderOptions{From: from, Transport: t, Logger: logger, Backoff: c.RetryAfter.D()}); err != nil {
		return nil, err
	}
	return s, nil
}
