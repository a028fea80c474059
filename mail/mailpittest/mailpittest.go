// Package mailpittest gives tests a real mail server: mailpit (Version),
// which receives messages over SMTP as a relay would and shows what it
// received through its HTTP API, so that the mail package is tested
// against a real SMTP conversation (STARTTLS, implicit TLS,
// authentication, refused recipients) and what a person would read is
// asserted on the message as received.
//
// Start installs mailpit with "go install" (once per machine: the binary
// is kept in the user's cache directory, see BinDir), runs it on two free
// loopback ports (SMTP and HTTP) with its database in the test's temporary
// directory, and stops it at the end of the test. When it cannot be
// installed (no go, no network) the test is skipped with a loud message,
// unless AIDANTS_TEST_REQUIRE_ALL=1 (CI), which turns the skip into a
// failure. CI installs it beforehand (.ci/run).
//
// This package must not import the mail package it helps to test: the
// mail package's own tests import it.
package mailpittest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"aidants/internal/testtool"
)

// Version is the mailpit release the tests run.
const Version = "v1.33.1"

var mailpit = testtool.GoTool{
	Name:     "mailpit " + Version,
	Dir:      "mailpit-" + Version,
	Packages: []string{"github.com/axllent/mailpit@" + Version},
	Binaries: []string{"mailpit"},
}

// BinDir is where the tests keep mailpit:
// <user cache dir>/aidants-test/mailpit-<Version>/bin. CI pre-installs it
// there with
//
//	GOBIN="${XDG_CACHE_HOME:-$HOME/.cache}/aidants-test/mailpit-v1.33.1/bin" \
//		go install github.com/axllent/mailpit@v1.33.1
func BinDir() (string, error) { return mailpit.BinDir() }

// TB is what the helpers need of a test: a testing.TB has it, and so can a
// program such as the benchmark command.
type TB = testtool.TB

// TLS says how the SMTP port speaks TLS.
type TLS int

const (
	// NoTLS: plain SMTP, as a relay on loopback.
	NoTLS TLS = iota
	// STARTTLS: plain first, and mail is refused until the client has
	// started TLS (smtp:// with STARTTLS required).
	STARTTLS
	// ImplicitTLS: TLS from the first byte (smtps://).
	ImplicitTLS
)

// Options configures the server.
type Options struct {
	// TLS gives SMTP a certificate for 127.0.0.1, localhost and
	// Hostname, signed by an authority of the test's own (CAFile).
	TLS TLS
	// Auth makes SMTP accept any user name and password (over plain text
	// too when TLS is NoTLS, as loopback relays do). Without it, SMTP
	// takes mail without authentication.
	Auth bool
	// AllowedRecipients, when set, is a regular expression: mail to any
	// other recipient is refused for good (550).
	AllowedRecipients string
}

// Hostname is a name the server's certificate holds besides 127.0.0.1 and
// localhost, for tests that dial a non-loopback name to the server.
const Hostname = "mailpit.test"

// Server is a running mailpit.
type Server struct {
	// SMTPAddr is the SMTP host:port on 127.0.0.1. It and the API stay
	// on the same ports across restarts.
	SMTPAddr string
	// SMTPPort is its port.
	SMTPPort int
	// APIURL is the base of the web interface and API,
	// http://127.0.0.1:<port>.
	APIURL string
	// CAFile is the PEM certificate of the authority that signed the SMTP
	// certificate (with a TLS option), for the client's ca_file.
	CAFile string

	opts          Options
	bin, dir      string
	certFile, key string
	httpPort      int
	hc            *http.Client

	mu   sync.Mutex
	proc *testtool.Process
}

const (
	startTimeout = 20 * time.Second
	apiTimeout   = 10 * time.Second
)

// Start runs a mailpit until the end of the test.
func Start(t TB, opts Options) *Server {
	t.Helper()
	bin := mailpit.Install(t)[0]
	s := &Server{opts: opts, bin: bin, dir: t.TempDir(), hc: &http.Client{Timeout: apiTimeout}}
	if opts.TLS != NoTLS {
		if err := s.makeCertificates(); err != nil {
			t.Fatalf("mailpittest: certificates: %v", err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mailpit output:\n%s", s.output())
		}
		s.Stop()
	})
	var errs []error
	for range 3 {
		smtpPort, err1 := testtool.FreePort()
		httpPort, err2 := testtool.FreePort()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("mailpittest: %v", err)
		}
		p, err := s.start(smtpPort, httpPort)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.proc = p
		s.SMTPPort, s.httpPort = smtpPort, httpPort
		s.SMTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(smtpPort))
		s.APIURL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
		return s
	}
	t.Fatalf("mailpittest: mailpit did not start: %v", errors.Join(errs...))
	return nil
}

// Stop stops mailpit (interrupt, then kill after a few seconds): its SMTP
// port refuses connections until Restart. Its database stays.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

// Restart starts mailpit again on the same ports and database, after
// Stop (or stops it first).
func (s *Server) Restart(t TB) {
	t.Helper()
	s.Stop()
	var err error
	for range 20 { // the port may take a moment to be free again
		var p *testtool.Process
		if p, err = s.start(s.SMTPPort, s.httpPort); err == nil {
			s.mu.Lock()
			s.proc = p
			s.mu.Unlock()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("mailpittest: restart: %v", err)
}

// start runs mailpit on the given ports and waits until it answers.
func (s *Server) start(smtpPort, httpPort int) (*testtool.Process, error) {
	smtpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(smtpPort))
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	args := []string{
		"--database", filepath.Join(s.dir, "mailpit.db"),
		"--smtp", smtpAddr,
		"--listen", httpAddr,
		"--max", "0", // keep every message: tests count them
		"--disable-version-check",
		"--smtp-disable-rdns",
	}
	if s.opts.Auth {
		args = append(args, "--smtp-auth-accept-any")
		if s.opts.TLS == NoTLS {
			args = append(args, "--smtp-auth-allow-insecure")
		}
	}
	switch s.opts.TLS {
	case STARTTLS:
		args = append(args, "--smtp-tls-cert", s.certFile, "--smtp-tls-key", s.key, "--smtp-require-starttls")
	case ImplicitTLS:
		args = append(args, "--smtp-tls-cert", s.certFile, "--smtp-tls-key", s.key, "--smtp-require-tls")
	}
	if s.opts.AllowedRecipients != "" {
		args = append(args, "--smtp-allowed-recipients", s.opts.AllowedRecipients)
	}
	// Settings come from the flags only, not from a developer's MP_*
	// environment.
	cmd := exec.Command(s.bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p, err := testtool.StartCmd(cmd)
	if err != nil {
		return nil, fmt.Errorf("start mailpit: %w", err)
	}
	if err := waitReady(p, "http://"+httpAddr, smtpAddr); err != nil {
		p.Stop()
		return nil, fmt.Errorf("on %s and %s: %w\n%s", smtpAddr, httpAddr, err, p.Output())
	}
	return p, nil
}

// waitReady waits until the API answers /readyz and the SMTP port takes
// connections.
func waitReady(p *testtool.Process, api, smtpAddr string) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.Done():
			return fmt.Errorf("mailpit exited: %v", p.Err())
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := hc.Get(api + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		c, err := net.DialTimeout("tcp", smtpAddr, time.Second)
		if err != nil {
			continue
		}
		c.Close()
		return nil
	}
	return fmt.Errorf("no answer within %v", startTimeout)
}

func (s *Server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return "(stopped)"
	}
	return s.proc.Output()
}

// makeCertificates writes an authority (CAFile) and a certificate it
// signed for the SMTP port.
func (s *Server) makeCertificates() error {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mailpittest authority"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost", Hostname},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	s.CAFile = filepath.Join(s.dir, "ca.pem")
	s.certFile = filepath.Join(s.dir, "smtp.pem")
	s.key = filepath.Join(s.dir, "smtp-key.pem")
	for _, f := range []struct {
		path, kind string
		der        []byte
	}{{s.CAFile, "CERTIFICATE", caDER}, {s.certFile, "CERTIFICATE", der}, {s.key, "EC PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), 0o600); err != nil {
			return err
		}
	}
	if _, err := tls.LoadX509KeyPair(s.certFile, s.key); err != nil {
		return err
	}
	return nil
}

// Address is a mailbox in a message's header.
type Address struct {
	Name    string `json:"Name"`
	Address string `json:"Address"`
}

// Summary is a message in the list.
type Summary struct {
	ID        string    `json:"ID"`        // mailpit's id, for Message
	MessageID string    `json:"MessageID"` // the Message-ID header, without angle brackets
	From      *Address  `json:"From"`
	To        []Address `json:"To"`
	Subject   string    `json:"Subject"`
	Created   time.Time `json:"Created"`  // when mailpit received it
	Username  string    `json:"Username"` // the SMTP user that sent it, if any
}

// Message is a received message as a mail client shows it.
type Message struct {
	ID        string    `json:"ID"`
	MessageID string    `json:"MessageID"`
	From      *Address  `json:"From"`
	To        []Address `json:"To"`
	Subject   string    `json:"Subject"`
	Date      time.Time `json:"Date"`
	Username  string    `json:"Username"`
	// Text and HTML are the decoded bodies of the text/plain and
	// text/html parts.
	Text        string                                   `json:"Text"`
	HTML        string                                   `json:"HTML"`
	Size        int64                                    `json:"Size"`
	Inline      []struct{ FileName, ContentType string } `json:"Inline"`
	Attachments []struct{ FileName, ContentType string } `json:"Attachments"`
}

// Messages returns every message received, oldest first.
func (s *Server) Messages(t TB) []Summary {
	t.Helper()
	var out []Summary
	for start := 0; ; {
		var page struct {
			Total    int       `json:"messages_count"`
			Messages []Summary `json:"messages"`
		}
		s.get(t, "/api/v1/messages?limit=500&start="+strconv.Itoa(start), &page)
		out = append(out, page.Messages...)
		start += len(page.Messages)
		if len(page.Messages) == 0 || start >= page.Total {
			break
		}
	}
	slices.Reverse(out)
	return out
}

// WaitMessages waits until at least n messages were received, and returns
// them all, oldest first.
func (s *Server) WaitMessages(t TB, n int, timeout time.Duration) []Summary {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ms := s.Messages(t)
		if len(ms) >= n {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpittest: %d messages received within %v, want %d", len(ms), timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Message returns a received message, its bodies decoded.
func (s *Server) Message(t TB, id string) Message {
	t.Helper()
	var m Message
	s.get(t, "/api/v1/message/"+url.PathEscape(id), &m)
	return m
}

// Headers returns a received message's header fields, as received.
func (s *Server) Headers(t TB, id string) map[string][]string {
	t.Helper()
	var h map[string][]string
	s.get(t, "/api/v1/message/"+url.PathEscape(id)+"/headers", &h)
	return h
}

// Raw returns a received message's source, as received.
func (s *Server) Raw(t TB, id string) []byte {
	t.Helper()
	resp, err := s.hc.Get(s.APIURL + "/api/v1/message/" + url.PathEscape(id) + "/raw")
	if err != nil {
		t.Fatalf("mailpittest: raw message: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("mailpittest: raw message: %s %v", resp.Status, err)
	}
	return b
}

func (s *Server) get(t TB, path string, dst any) {
	t.Helper()
	resp, err := s.hc.Get(s.APIURL + path)
	if err != nil {
		t.Fatalf("mailpittest: GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("mailpittest: GET %s: %s %v\n%s", path, resp.Status, err, body)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		t.Fatalf("mailpittest: GET %s: %v\n%s", path, err, body)
	}
}
