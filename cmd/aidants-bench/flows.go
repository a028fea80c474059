package main

// Act-on-behalf flows over loopback HTTP (SPEC §10): the real service,
// built and started as its own process in development mode, serves many
// concurrent clients, each playing an aidant's browser and a public
// service: authorize → the chooser → the choice → token (private_key_jwt)
// → userinfo. The baseline, in the same run and with the same clients, is
// the cheapest request the server answers (GET /healthz): the ratio says
// how many plain round trips a complete flow costs.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"aidants/mail/mailpittest"
)

type flowResult struct {
	clients   int
	flows     int64
	elapsed   time.Duration
	p50, p99  time.Duration
	baseline  float64 // GET /healthz per second, same clients
	serverRSS int64   // peak resident memory of the server process
	failures  int64
	writer    writerStats // the audit writer over the flows' rounds
}

// writerStats are the audit writer's counters from /metrics.
type writerStats struct{ batches, units, commitSeconds, batchSeconds float64 }

func (a writerStats) minus(b writerStats) writerStats {
	return writerStats{a.batches - b.batches, a.units - b.units, a.commitSeconds - b.commitSeconds, a.batchSeconds - b.batchSeconds}
}

func (s *server) writerStats() writerStats {
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		return writerStats{}
	}
	defer resp.Body.Close()
	var w writerStats
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "aidants_audit_batches_total":
			w.batches = v
		case "aidants_audit_units_total":
			w.units = v
		case "aidants_audit_commit_seconds_total":
			w.commitSeconds = v
		case "aidants_audit_batch_seconds_total":
			w.batchSeconds = v
		}
	}
	return w
}

func (f flowResult) rate() float64 { return float64(f.flows) / f.elapsed.Seconds() }

var (
	readyLine    = regexp.MustCompile(`prêt sur (http://\S+)`)
	requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)
	actionField  = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	draftPath    = regexp.MustCompile(`/brouillons/(drf_[a-z0-9]+)`)
	demandeField = regexp.MustCompile(`name="demande" value="([^"]+)"`)
	mandatField  = regexp.MustCompile(`name="mandat" value="([^"]+)"`)
	demarcheOne  = regexp.MustCompile(`name="demarche" value="([^"]+)"`)
)

// server is the aidants binary serving in development mode.
type server struct {
	cmd  *exec.Cmd
	url  string
	bin  string
	data string
}

func startServer(ctx context.Context, bin, data string, env ...string) (*server, error) {
	cmd := exec.Command(bin, "serve", "--dev", "--data", data, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = nil // request logs are written (to /dev/null), as a server writes them
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
		close(urlc)
	}()
	select {
	case u, ok := <-urlc:
		if !ok {
			cmd.Wait()
			return nil, errors.New("the server stopped before it was ready")
		}
		return &server{cmd: cmd, url: u, bin: bin, data: data}, nil
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		return nil, errors.New("the server did not start in 60 s")
	case <-ctx.Done():
		cmd.Process.Kill()
		return nil, ctx.Err()
	}
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// peakRSS is the server's peak resident memory, in bytes.
func (s *server) peakRSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// agent is one concurrent client: an aidant's browser (its own session)
// and the public service's side of the flow.
type agent struct {
	s        *server
	c        *http.Client
	clientID string
	key      jose.JSONWebKey
	redirect string
}

func newAgent(s *server, clientID string, key jose.JSONWebKey, redirect string) *agent {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), redirect) {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	return &agent{s: s, c: c, clientID: clientID, key: key, redirect: redirect}
}

func (a *agent) do(req *http.Request) (*http.Response, string, error) {
	resp, err := a.c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func (a *agent) get(u string) (*http.Response, string, error) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return a.do(req)
}

func (a *agent) post(u string, form url.Values) (*http.Response, string, error) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return a.do(req)
}

// pick answers a development identity provider's page with identity sub.
func (a *agent) pick(resp *http.Response, body, sub string) (*http.Response, string, error) {
	req, act := requestField.FindStringSubmatch(body), actionField.FindStringSubmatch(body)
	if req == nil || act == nil {
		return nil, "", fmt.Errorf("no identity form at %s", resp.Request.URL)
	}
	target, err := resp.Request.URL.Parse(html.UnescapeString(act[1]))
	if err != nil {
		return nil, "", err
	}
	return a.post(target.String(), url.Values{"request": {req[1]}, "identity": {sub}})
}

func (a *agent) signIn(sub string) error {
	resp, body, err := a.get(a.s.url + "/connexion/aidant")
	if err != nil {
		return err
	}
	resp, _, err = a.pick(resp, body, sub)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(resp.Request.URL.Path, "/tableau-de-bord") {
		return fmt.Errorf("aidant sign-in ended at %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	return nil
}

// mandate creates an on-site mandate with the person sub.
func (a *agent) mandate(sub string) error {
	resp, _, err := a.post(a.s.url+"/mandats/nouveau", url.Values{"demarches": {"argent", "social"}, "duree": {"6m"}, "methode": {"on_site"}})
	if err != nil {
		return err
	}
	m := draftPath.FindStringSubmatch(resp.Request.URL.Path)
	if m == nil {
		return fmt.Errorf("new mandate ended at %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	resp, body, err := a.post(a.s.url+"/brouillons/"+m[1]+"/franceconnect", nil)
	if err != nil {
		return err
	}
	if _, _, err = a.pick(resp, body, sub); err != nil {
		return err
	}
	resp, _, err = a.post(a.s.url+"/brouillons/"+m[1]+"/signer", url.Values{"accord_personne": {"oui"}, "confirmation_aidant": {"oui"}})
	if err != nil {
		return err
	}
	if !strings.HasSuffix(resp.Request.URL.Path, "/attestation") {
		return fmt.Errorf("signing the mandate ended at %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	return nil
}

// flow runs one complete act-on-behalf flow; choice picks among the
// persons offered.
func (a *agent) flow(choice int) error {
	verifier, state, nonce := oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	q := url.Values{"response_type": {"code"}, "client_id": {a.clientID}, "redirect_uri": {a.redirect},
		"scope": {"openid given_name family_name birthdate"}, "state": {state}, "nonce": {nonce},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}, "acr_values": {"eidas1"}}
	resp, body, err := a.get(a.s.url + "/oidc/authorize?" + q.Encode())
	if err != nil {
		return err
	}
	demande, mandats, dem := demandeField.FindStringSubmatch(body), mandatField.FindAllStringSubmatch(body, -1), demarcheOne.FindAllStringSubmatch(body, -1)
	if resp.StatusCode != http.StatusOK || demande == nil || len(mandats) == 0 || len(dem) == 0 {
		return fmt.Errorf("chooser: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	i := choice % len(mandats)
	resp, _, err = a.post(a.s.url+"/agir", url.Values{"demande": {demande[1]}, "mandat": {mandats[i][1]}, "demarche": {dem[0][1]}})
	if err != nil {
		return err
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || back.Query().Get("state") != state {
		return fmt.Errorf("choice: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	assertion, err := a.assertion()
	if err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodPost, a.s.url+"/oidc/token", strings.NewReader(url.Values{
		"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "redirect_uri": {a.redirect},
		"code_verifier": {verifier}, "client_id": {a.clientID},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err = a.do(req)
	if err != nil {
		return err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		IDToken     string `json:"id_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &tok) != nil || tok.IDToken == "" {
		return fmt.Errorf("token: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodGet, a.s.url+"/oidc/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, body, err = a.do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"act"`) {
		return fmt.Errorf("userinfo: %d %s", resp.StatusCode, body)
	}
	return nil
}

func (a *agent) assertion() (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: a.key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	b, _ := json.Marshal(map[string]any{"iss": a.clientID, "sub": a.clientID, "aud": a.s.url + "/oidc/token",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": oauth2.GenerateVerifier()})
	obj, err := signer.Sign(b)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// registerService registers the benchmark's public service with the
// operator command line, beside the running server.
func registerService(ctx context.Context, s *server, redirect string) (string, jose.JSONWebKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", jose.JSONWebKey{}, err
	}
	key := jose.JSONWebKey{Key: priv, KeyID: "bench-1", Algorithm: "ES256", Use: "sig"}
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	file := filepath.Join(s.data, "bench-jwks.json")
	if err := os.WriteFile(file, pub, 0o600); err != nil {
		return "", key, err
	}
	out, err := exec.CommandContext(ctx, s.bin, "service", "add", "--dev", "--data", s.data, "--name", "Service de mesure",
		"--redirect-uri", redirect, "--demarches", "argent,social", "--jwks", file).CombinedOutput()
	if err != nil {
		return "", key, fmt.Errorf("service add: %v: %s", err, out)
	}
	m := regexp.MustCompile(`client_id: (\S+)`).FindSubmatch(out)
	if m == nil {
		return "", key, fmt.Errorf("service add said %q", out)
	}
	return string(m[1]), key, nil
}

// runClients runs f on every agent until d has passed, and returns the
// number of successes, the latencies and the failures.
func runClients(agents []*agent, d time.Duration, f func(a *agent, i int) error) (int64, []time.Duration, int64, error) {
	var done, failed atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for k, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := k; time.Now().Before(deadline); i++ {
				t := time.Now()
				if err := f(a, i); err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				mine = append(mine, time.Since(t))
				done.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return done.Load(), lat, failed.Load(), firstErr
}

func benchFlows(ctx context.Context, o options, r *report) error {
	dir, err := os.MkdirTemp(o.cache, "flows-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "aidants")
	logf("flows: building the aidants binary")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/aidants").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/aidants: %v: %s", err, out)
	}
	if o.mailClients > 0 {
		// Before the main server: the comparison runs on a quiet machine.
		if r.mail, err = benchMail(ctx, o, bin, dir); err != nil {
			return fmt.Errorf("flows with mail: %w", err)
		}
	}
	s, err := startServer(ctx, bin, filepath.Join(dir, "data"))
	if err != nil {
		return err
	}
	defer s.stop()
	redirect := "http://127.0.0.1:9/bench/callback" // never contacted: clients read the redirect
	clientID, key, err := registerService(ctx, s, redirect)
	if err != nil {
		return err
	}
	// Three persons with a mandate of the organisation, then one signed-in
	// aidant session per client.
	setup := newAgent(s, clientID, key, redirect)
	if err := setup.signIn("dev-aidant-camille"); err != nil {
		return err
	}
	for _, p := range []string{"dev-usager-josephine", "dev-usager-ahmed", "dev-usager-lucie"} {
		if err := setup.mandate(p); err != nil {
			return fmt.Errorf("mandate for %s: %w", p, err)
		}
	}
	if r.anonymous, err = measureAnonymous(s, clientID, key, redirect); err != nil {
		return err
	}
	var all []*agent
	for _, n := range o.flowClients {
		for len(all) < n {
			a := newAgent(s, clientID, key, redirect)
			if err := a.signIn("dev-aidant-camille"); err != nil {
				return err
			}
			all = append(all, a)
		}
		res, err := measureFlows(s, all[:n], o)
		if err != nil {
			return err
		}
		r.flows = append(r.flows, res)
	}
	return nil
}

// anonymousCost is what anonymous visits cost the journal's writer.
type anonymousCost struct {
	visits int
	units  float64
}

// measureAnonymous opens, from fresh browsers, the aidants' sign-in and a
// service's authorization request, following every redirect (to the
// identity provider's page, to the page that asks the visitor to sign in),
// and counts the writer's units meanwhile.
func measureAnonymous(s *server, clientID string, key jose.JSONWebKey, redirect string) (*anonymousCost, error) {
	const visits = 200
	before := s.writerStats()
	for i := range visits {
		a := newAgent(s, clientID, key, redirect)
		resp, _, err := a.get(s.url + "/connexion/aidant")
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("anonymous sign-in start %d: %v %v", i, resp.StatusCode, err)
		}
		q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
			"scope": {"openid given_name"}, "state": {fmt.Sprint("anonyme-", i)}, "nonce": {fmt.Sprint("n-", i)},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
		a = newAgent(s, clientID, key, redirect)
		resp, _, err = a.get(s.url + "/oidc/authorize?" + q.Encode())
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("anonymous authorization request %d: %v at %v, %v", i, resp.StatusCode, resp.Request.URL, err)
		}
	}
	c := &anonymousCost{visits: visits, units: s.writerStats().minus(before).units}
	logf("flows: %d anonymous sign-in starts and %d authorization requests cost %.0f writer units", visits, visits, c.units)
	return c, nil
}

// measureFlows runs the flows with the given clients, interleaved with the
// baseline, and returns the medians.
func measureFlows(s *server, agents []*agent, o options) (flowResult, error) {
	flow := func(a *agent, i int) error { return a.flow(i) }
	health := func(a *agent, _ int) error {
		resp, _, err := a.get(s.url + "/healthz")
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("healthz: %d", resp.StatusCode)
		}
		return err
	}
	logf("flows: warming up with %d clients", len(agents))
	if _, _, failed, err := runClients(agents, time.Second, flow); failed > 0 {
		return flowResult{}, fmt.Errorf("flows: %d failed, first: %w", failed, err)
	}
	var rounds []flowResult
	var bases []float64
	for round := 0; round < o.rounds; round++ {
		before := s.writerStats()
		n, lat, failed, err := runClients(agents, o.seconds, flow)
		ws := s.writerStats().minus(before)
		if failed > 0 {
			return flowResult{}, fmt.Errorf("flows: %d failed, first: %w", failed, err)
		}
		res := flowResult{clients: len(agents), flows: n, elapsed: o.seconds, p50: pct(lat, 50), p99: pct(lat, 99), writer: ws}
		rounds = append(rounds, res)
		b, _, failed, err := runClients(agents, o.seconds, health)
		if failed > 0 {
			return flowResult{}, fmt.Errorf("healthz: %d failed, first: %w", failed, err)
		}
		bases = append(bases, float64(b)/o.seconds.Seconds())
		logf("flows: %d clients, round %d: %s flows/s (p50 %s, p99 %s), healthz %s/s; writer: %.0f batches, %.1f units each, commit %.1f ms, batch %.1f ms",
			len(agents), round+1, num(res.rate()), ms(res.p50), ms(res.p99), num(bases[round]), ws.batches, ws.units/ws.batches,
			1000*ws.commitSeconds/ws.batches, 1000*ws.batchSeconds/ws.batches)
	}
	sort.Slice(rounds, func(i, j int) bool { return rounds[i].rate() < rounds[j].rate() })
	sort.Float64s(bases)
	res := rounds[len(rounds)/2]
	res.baseline = bases[len(bases)/2]
	res.serverRSS = s.peakRSS()
	return res, nil
}

// mailResult compares the flows of a server that tells people by email
// (to a local mailpit) with the same server without mail, same run.
type mailResult struct {
	with, without flowResult
	sent          int // messages mailpit received during the run
}

// benchMail runs the flows on two servers — one sending to a local
// mailpit, one with mail off (AIDANTS_SMTP_URL=none) — interleaved round by
// round with the same number of clients.
func benchMail(ctx context.Context, o options, bin, dir string) (res *mailResult, err error) {
	tb := &benchTB{dir: dir}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
		tb.close()
	}()
	mp := mailpittest.Start(tb, mailpittest.Options{})
	start := func(name string, env ...string) (*server, []*agent, error) {
		s, err := startServer(ctx, bin, filepath.Join(dir, name), env...)
		if err != nil {
			return nil, nil, err
		}
		redirect := "http://127.0.0.1:9/bench/callback"
		clientID, key, err := registerService(ctx, s, redirect)
		if err != nil {
			s.stop()
			return nil, nil, err
		}
		setup := newAgent(s, clientID, key, redirect)
		if err := setup.signIn("dev-aidant-camille"); err != nil {
			s.stop()
			return nil, nil, err
		}
		for _, p := range []string{"dev-usager-josephine", "dev-usager-ahmed", "dev-usager-lucie"} {
			if err := setup.mandate(p); err != nil {
				s.stop()
				return nil, nil, fmt.Errorf("mandate for %s: %w", p, err)
			}
		}
		var agents []*agent
		for range o.mailClients {
			a := newAgent(s, clientID, key, redirect)
			if err := a.signIn("dev-aidant-camille"); err != nil {
				s.stop()
				return nil, nil, err
			}
			agents = append(agents, a)
		}
		return s, agents, nil
	}
	with, withAgents, err := start("data-mail", "AIDANTS_SMTP_URL=smtp://"+mp.SMTPAddr)
	if err != nil {
		return nil, err
	}
	defer with.stop()
	without, withoutAgents, err := start("data-nomail", "AIDANTS_SMTP_URL=none")
	if err != nil {
		return nil, err
	}
	defer without.stop()
	one := o
	one.rounds = 1
	var ws, wos []flowResult
	for round := 0; round < o.rounds; round++ {
		// Alternate which goes first, so that neither always runs on
		// the warmer machine.
		var a, b flowResult
		first, second := func() error { var err error; a, err = measureFlows(with, withAgents, one); return err },
			func() error { var err error; b, err = measureFlows(without, withoutAgents, one); return err }
		if round%2 == 1 {
			first, second = second, first
		}
		if err := first(); err != nil {
			return nil, err
		}
		if err := second(); err != nil {
			return nil, err
		}
		ws, wos = append(ws, a), append(wos, b)
		logf("flows with mail: round %d: %s flows/s with mail, %s without", round+1, num(a.rate()), num(b.rate()))
	}
	med := func(rs []flowResult) flowResult {
		sort.Slice(rs, func(i, j int) bool { return rs[i].rate() < rs[j].rate() })
		return rs[len(rs)/2]
	}
	res = &mailResult{with: med(ws), without: med(wos), sent: len(mp.Messages(tb))}
	return res, nil
}
