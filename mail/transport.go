package mail

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"aidants/config"
)

// Transport hands messages to the next hop: an SMTP relay, or the
// development mailbox.
type Transport interface {
	// Send delivers msgs in order and returns one error per message: nil
	// once the next hop has taken it, an error wrapping ErrRefused when it
	// refused that message for good (the sender gives it up), any other
	// error when it may take it later (the sender retries). Send must
	// return within ctx's deadline, give or take one SMTP timeout.
	Send(ctx context.Context, msgs []Outgoing) []error
}

// ErrRefused is wrapped by the error of a message the next hop refused for
// good (an SMTP 5xx answer to the recipient or the content).
var ErrRefused = errors.New("mail: refused by the relay")

// Outgoing is a message as handed to a Transport.
type Outgoing struct {
	ID        string // the outbox row
	MessageID string // <…@domain>, the same at every attempt
	From      string // "Aidants <ne-pas-repondre@…>"
	To        string
	Date      time.Time // when it was queued
	Content
}

// build makes the MIME message: multipart/alternative of a text/plain and
// a text/html part when there is HTML, UTF-8, quoted-printable.
func (o *Outgoing) build() (*gomail.Msg, error) {
	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := m.From(o.From); err != nil {
		return nil, fmt.Errorf("mail: sender: %w", err)
	}
	if err := m.To(o.To); err != nil {
		return nil, fmt.Errorf("%w: the recipient is not an email address", ErrInvalid)
	}
	m.Subject(o.Subject)
	m.SetMessageIDWithValue(strings.TrimSuffix(strings.TrimPrefix(o.MessageID, "<"), ">"))
	m.SetDateWithValue(o.Date)
	// RFC 3834: an automatic message, to which nobody's vacation
	// responder should answer.
	m.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	m.SetGenHeader(gomail.HeaderXAutoResponseSuppress, "All")
	m.SetBodyString(gomail.TypeTextPlain, o.Text)
	if o.HTML != "" {
		m.AddAlternativeString(gomail.TypeTextHTML, o.HTML)
	}
	return m, nil
}

// MIME returns the message as a relay receives it (RFC 5322, CRLF line
// ends).
func (o *Outgoing) MIME() ([]byte, error) {
	m, err := o.build()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("mail: write message: %w", err)
	}
	return b.Bytes(), nil
}

// SMTP delivers to a relay: over TLS from the first byte (smtps://), or
// with STARTTLS, which it requires unless the relay is on loopback
// (smtp://). It authenticates with the URL's user and password, if any.
type SMTP struct {
	host     string
	port     int
	implicit bool // smtps://
	loopback bool
	user     string
	password string
	tls      *tls.Config
	timeout  time.Duration
	dialTo   string // tests: the address dialled instead of host:port (never with implicit TLS)
}

// DefaultSMTPTimeout bounds each step of an SMTP conversation.
const DefaultSMTPTimeout = 30 * time.Second

// NewSMTP returns the transport to the relay of rawURL
// (smtps://user:password@host:465 or smtp://user:password@host:587),
// trusting the authorities of the PEM file caFile if set, else the
// system's. Its errors never repeat the URL, which holds a password.
func NewSMTP(rawURL, caFile string) (*SMTP, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" || u.Opaque != "" {
		return nil, errors.New("mail: the SMTP URL must be smtps://user:password@host:465 or smtp://user:password@host:587")
	}
	s := &SMTP{host: u.Hostname(), implicit: u.Scheme == "smtps", timeout: DefaultSMTPTimeout}
	s.loopback = config.IsLoopbackHost(s.host)
	s.port = 587
	if s.implicit {
		s.port = 465
	}
	if p := u.Port(); p != "" {
		if s.port, err = strconv.Atoi(p); err != nil || s.port < 1 || s.port > 65535 {
			return nil, errors.New("mail: the SMTP URL has an invalid port")
		}
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.password, _ = u.User.Password()
	}
	s.tls = &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("mail: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mail: CA file %s holds no PEM certificate", caFile)
		}
		s.tls.RootCAs = pool
	}
	return s, nil
}

// String describes the relay without its credentials, for logs.
func (s *SMTP) String() string {
	mode := "STARTTLS"
	switch {
	case s.implicit:
		mode = "TLS"
	case s.loopback:
		mode = "STARTTLS if offered (loopback)"
	}
	return fmt.Sprintf("smtp %s:%d (%s)", s.host, s.port, mode)
}

// client returns a client for one conversation; conn receives the
// connection it dials (not with implicit TLS).
func (s *SMTP) client(conn *net.Conn) (*gomail.Client, error) {
	opts := []gomail.Option{
		gomail.WithPort(s.port),
		gomail.WithTimeout(s.timeout),
		gomail.WithTLSConfig(s.tls),
	}
	switch {
	case s.implicit:
		opts = append(opts, gomail.WithSSL())
	case s.loopback:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.user != "" {
		// Over TLS, the strongest mechanism the relay offers; on a
		// loopback relay that may be plain, PLAIN, which the library
		// allows on loopback only.
		mech := gomail.SMTPAuthAutoDiscover
		if s.loopback && !s.implicit {
			mech = gomail.SMTPAuthPlain
		}
		opts = append(opts, gomail.WithSMTPAuth(mech), gomail.WithUsername(s.user), gomail.WithPassword(s.password))
	}
	if !s.implicit {
		// Our own dialer, to close the connection when the conversation
		// fails before a message (STARTTLS, authentication): the library
		// leaves it open. (With implicit TLS the library must dial itself
		// to know the connection is encrypted.)
		d := &net.Dialer{}
		opts = append(opts, gomail.WithDialContextFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
			if s.dialTo != "" {
				addr = s.dialTo
			}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				*conn = c
			}
			return c, err
		}))
	}
	return gomail.NewClient(s.host, opts...)
}

// Send delivers msgs over one connection.
func (s *SMTP) Send(ctx context.Context, msgs []Outgoing) []error {
	errs := make([]error, len(msgs))
	built := make([]*gomail.Msg, len(msgs))
	for i := range msgs {
		m, err := msgs[i].build()
		if err != nil {
			errs[i] = fmt.Errorf("%w: %w", ErrRefused, err) // it will not build better later
			continue
		}
		built[i] = m
	}
	var raw net.Conn
	c, err := s.client(&raw)
	if err != nil {
		return fill(errs, s.scrub(err))
	}
	conn, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		if raw != nil {
			raw.Close()
		}
		return fill(errs, s.scrub(fmt.Errorf("connect to %s:%d: %w", s.host, s.port, err)))
	}
	defer c.CloseWithSMTPClient(conn)
	for i, m := range built {
		if m == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		err := c.SendWithSMTPClient(conn, m)
		if m.IsDelivered() {
			continue // taken, even if what followed (RSET) failed
		}
		if err == nil {
			err = errors.New("not delivered")
		}
		errs[i] = s.scrub(err)
	}
	return errs
}

// scrub keeps the password out of an error and marks a refusal for good
// (an SMTP 5xx answer to the message) as ErrRefused.
func (s *SMTP) scrub(err error) error {
	msg := err.Error()
	if s.password != "" {
		msg = strings.ReplaceAll(msg, s.password, "***")
	}
	var se *gomail.SendError
	if errors.As(err, &se) && se.ErrorCode() >= 500 && se.ErrorCode() < 600 {
		switch se.Reason {
		case gomail.ErrSMTPRcptTo, gomail.ErrSMTPData, gomail.ErrSMTPDataClose:
			return fmt.Errorf("%w: %s", ErrRefused, msg)
		}
	}
	return errors.New(msg)
}

func fill(errs []error, err error) []error {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}
