package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"aidants/auth/hostileidp"
	"aidants/devidp"
)

// hostileSide is one of the instance's two callbacks, as the attacks
// need it.
type hostileSide struct {
	name     string
	idp      *devidp.Provider
	client   string
	callback string                // the instance's redirect URI for it
	start    func(*stepper) string // starts a sign-in there, returns the provider's callback URL
	// refused is what this callback's page says of an answer that does
	// not verify.
	refused string
}

// TestHostileProvidersGetTheSignInPagesRefusal runs the instance as an
// operator deploys it — a configuration file, `aidants serve` — with two
// providers that forge on purpose (auth/hostileidp), and plays every
// attack against the aidants' sign-in callback and the FranceConnect
// callback: each is answered with the French refusal page of that
// callback (or the unavailability page when the provider's discovery
// cannot be trusted), no session opens, nothing is journaled, and the
// log names claims, never tokens nor people.
func TestHostileProvidersGetTheSignInPagesRefusal(t *testing.T) {
	const siret = "98765432100015"
	r := newRPInstance(t)
	mux := http.NewServeMux()
	var tokens atomic.Int64
	idps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/token") {
			tokens.Add(1)
		}
		mux.ServeHTTP(w, req)
	}))
	t.Cleanup(idps.Close)
	aidants, err := devidp.New(devidp.Options{Issuer: idps.URL + "/aidants", Kind: devidp.KindAidants,
		Identities: devidp.AidantIdentities(siret), ACR: hostileidp.AskedACR,
		Clients: []devidp.Client{{ID: "aidants", Secret: "s3cret-aidants", RedirectURIs: []string{r.public + "/connexion/aidant/retour"}}}})
	if err != nil {
		t.Fatal(err)
	}
	fc, err := devidp.New(devidp.Options{Issuer: idps.URL + "/franceconnect", Kind: devidp.KindFranceConnect,
		Identities: devidp.UsagerIdentities(), ACR: hostileidp.AskedACR,
		Clients: []devidp.Client{{ID: "fc", Secret: "s3cret-fc", RedirectURIs: []string{r.public + "/franceconnect/retour"}}}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/aidants/", aidants)
	mux.Handle("/franceconnect/", fc)
	r.configure(
		fmt.Sprintf("issuer = %q\nclient_id = \"aidants\"\nclient_secret = \"s3cret-aidants\"\nacr_values = %q", aidants.Issuer(), hostileidp.AskedACR),
		fmt.Sprintf("issuer = %q\nclient_id = \"fc\"\nclient_secret = \"s3cret-fc\"\nacr_values = %q", fc.Issuer(), hostileidp.AskedACR))
	c := r.cli()
	c.ok("org", "add", "--name", "France services Test", "--siret", siret)
	c.ok("aidant", "add", "--org", siret, "--email", devidp.EmailCamille, "--given-name", "Camille",
		"--family-name", "Martin", "--habilitated-until", "2099-12-31")
	s := r.serve()
	db := r.db()

	sides := []hostileSide{
		{name: "aidants", idp: aidants, client: "aidants", callback: r.public + "/connexion/aidant/retour",
			start: func(b *stepper) string {
				return b.pick(http.MethodGet, s.URL+"/connexion/aidant", nil, devidp.SubCamille)
			},
			refused: "La réponse du fournisseur d'identité n'a pas pu être vérifiée. Par sécurité, la connexion n'est pas ouverte."},
		{name: "franceconnect", idp: fc, client: "fc", callback: r.public + "/franceconnect/retour",
			start: func(b *stepper) string {
				return b.pick(http.MethodPost, s.URL+"/mon-espace/connexion", url.Values{}, devidp.SubJosephine)
			},
			refused: "La réponse de FranceConnect n'a pas pu être vérifiée. Par sécurité, rien n'a été enregistré."},
	}
	side := func(p *devidp.Provider) hostileSide {
		for _, sd := range sides {
			if sd.idp == p {
				return sd
			}
		}
		t.Fatal("unknown provider")
		return hostileSide{}
	}
	counts := func() (sessions, events int) {
		return count(t, db, `SELECT COUNT(*) FROM sessions`), count(t, db, `SELECT COUNT(*) FROM audit_events`)
	}

	covered := map[string]map[hostileidp.Family]bool{}
	play := func(sd hostileSide, atk hostileidp.Attack) {
		t.Run(sd.name+"/"+string(atk.Family)+"/"+atk.Name, func(t *testing.T) {
			victim := newStepper(t)
			other := aidants
			if sd.idp == aidants {
				other = fc
			}
			a := &hostileidp.Arena{Target: sd.idp, Other: other, Client: sd.client, OtherClient: side(other).client,
				Answer:         func(p *devidp.Provider) string { return side(p).start(victim) },
				AttackerAnswer: func(p *devidp.Provider) string { return side(p).start(newStepper(t)) },
				Callback:       func(p *devidp.Provider) string { return side(p).callback },
			}
			defer hostileidp.Reset(a)
			sessions, events := counts()
			before := tokens.Load()
			if atk.Arm != nil {
				atk.Arm(a)
			}
			var status int
			var body string
			switch {
			case atk.AtDiscovery && sd.name == "aidants":
				status, _, body = victim.do(http.MethodGet, s.URL+"/connexion/aidant", nil)
			case atk.AtDiscovery:
				status, _, body = victim.do(http.MethodPost, s.URL+"/mon-espace/connexion", url.Values{})
			case atk.Callback != nil:
				status, _, body = victim.do(http.MethodGet, atk.Callback(a), nil)
			default:
				status, _, body = victim.do(http.MethodGet, a.Answer(sd.idp), nil)
			}
			var wantStatus int
			var wantText []string
			switch atk.Want {
			case hostileidp.Refused:
				wantStatus, wantText = http.StatusBadRequest, []string{"La connexion n'a pas pu être vérifiée", sd.refused}
			case hostileidp.NotThisSignIn:
				wantStatus, wantText = http.StatusBadRequest, []string{"Cette connexion n'est plus valable", "a été ouvert dans un autre navigateur"}
			case hostileidp.Unavailable:
				wantStatus, wantText = http.StatusServiceUnavailable, []string{"Service momentanément indisponible"}
			}
			if status != wantStatus {
				t.Errorf("status %d, want %d", status, wantStatus)
			}
			for _, w := range wantText {
				if !strings.Contains(body, w) {
					t.Errorf("the page lacks %q:\n%s", w, firstLines(body))
				}
			}
			if n, e := counts(); n != sessions || e != events {
				t.Errorf("%d sessions and %d events more", n-sessions, e-events)
			}
			if atk.NoTokenRequest && tokens.Load() != before {
				t.Errorf("the code went to a token endpoint")
			}
			// The victim's browser holds no session either.
			if st, loc, _ := victim.do(http.MethodGet, s.URL+"/tableau-de-bord", nil); st != http.StatusSeeOther || !strings.Contains(loc, "/connexion?") {
				t.Errorf("dashboard: %d %s", st, loc)
			}
			if covered[sd.name] == nil {
				covered[sd.name] = map[hostileidp.Family]bool{}
			}
			covered[sd.name][atk.Family] = true
		})
	}
	honest := func(when string) {
		b := newStepper(t)
		if st, loc, body := b.do(http.MethodGet, sides[0].start(b), nil); st != http.StatusSeeOther || loc == "" {
			t.Fatalf("honest aidant %s the attacks: %d\n%s", when, st, firstLines(body))
		}
		if st, _, body := b.do(http.MethodGet, s.URL+"/tableau-de-bord", nil); st != http.StatusOK || !strings.Contains(body, "Bonjour Camille") {
			t.Fatalf("honest aidant %s the attacks: dashboard %d", when, st)
		}
		// An honest FranceConnect answer verifies; the person has no
		// mandate here, which the space says.
		if st, _, body := b.do(http.MethodGet, sides[1].start(b), nil); st != http.StatusOK || !strings.Contains(body, "Aucun mandat à votre nom") {
			t.Fatalf("honest person %s the attacks: %d\n%s", when, st, firstLines(body))
		}
	}

	attacks := hostileidp.Attacks()
	for _, sd := range sides { // before the instance discovers the providers
		for _, atk := range attacks {
			if atk.AtDiscovery {
				play(sd, atk)
			}
		}
	}
	honest("before")
	for _, sd := range sides {
		for _, atk := range attacks {
			if !atk.AtDiscovery {
				play(sd, atk)
			}
		}
	}
	honest("after")

	for _, sd := range sides {
		for _, f := range hostileidp.Families {
			if !covered[sd.name][f] {
				t.Errorf("%s callback: no attack of %q", sd.name, f)
			}
		}
	}
	logs := s.Log.String()
	for _, want := range []string{"reason=acr_not_met acr=eidas1", "reason=audience", "reason=userinfo_subject"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}`),
		regexp.MustCompile(`(?i)\b(code|state|nonce|id_token|access_token|client_secret)=`),
		regexp.MustCompile(`[a-z.]+@[a-z.-]+\.(example|org)`),
		regexp.MustCompile(`Camille|Martin|Joséphine|Lefèvre|dev-aidant|dev-usager|quelqu-un|s3cret`),
	} {
		if m := re.FindString(logs); m != "" {
			t.Errorf("the log holds %q (%s)", m, re)
		}
	}
}
