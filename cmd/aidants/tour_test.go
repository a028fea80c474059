package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"aidants/devidp"
	"aidants/internal/browsertest"
)

// The page tour: every page of the journeys, as each user sees it —
// anonymous, aidant, référent, the person, remote consent — in a real
// headless Chromium. The tour only drives the browser; at each page it
// calls a visit function, which checks the page (browser_a11y_test.go)
// or takes its screenshots (make screens).

// tourStop is one page of the tour.
type tourStop struct {
	// Name says what the page is, once per kind of page; it is also the
	// screenshot's file name (docs/screens/<name>-<width>.png).
	Name string
	// About says in a few words what the page is and who sees it.
	About string
	// Person: a page the person (usager) reads — the consent pages, her
	// space and its pages, her sign-in — held to plainer wording.
	Person bool
	// Technical: a page written for the developers of public services
	// (the integration documentation), which quotes protocol values such
	// as acr "eidas1": the developers' words are what it must show.
	Technical bool
	// Foreign: a page that is not the service's own (the development
	// identity providers, the development mailbox), held to the same
	// accessibility bars but not to the service's 44-pixel controls.
	Foreign bool
	// URL is where the browser was.
	URL string
}

// technicalPages are written for developers (see tourStop.Technical).
var technicalPages = map[string]bool{"services-documentation": true}

// foreignPages are not the service's own pages (see tourStop.Foreign).
var foreignPages = map[string]bool{"fournisseur-aidants": true, "fournisseur-franceconnect": true, "courriels": true}

// tourWidths are the viewport widths every page is seen at: a small
// phone (WCAG 1.4.10 reflow is judged at 320 CSS pixels) and a desktop.
var tourWidths = []int64{320, 1280}

// tour drives the journeys of one instance.
type tour struct {
	t     *testing.T
	url   string // the instance
	dev   bool   // development mode: the providers' pages and the demo service are the app's
	root  context.Context
	visit func(ctx context.Context, stop tourStop)
	seen  map[string]bool

	// Production mode: the registered service for acting on behalf,
	// the page it gets the browser back on, and the providers' origin.
	serviceID, serviceRedirect string
}

// at hands the page the browser shows in ctx to the visit function.
func (tr *tour) at(ctx context.Context, name, about string, person bool) {
	tr.t.Helper()
	if tr.seen[name] {
		tr.t.Fatalf("tour: page %q visited twice", name)
	}
	tr.seen[name] = true
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		tr.t.Fatalf("tour: %s: %v", name, err)
	}
	tr.visit(ctx, tourStop{Name: name, About: about, Person: person, URL: loc, Technical: technicalPages[name], Foreign: foreignPages[name]})
}

// navigate opens u in the tab and waits for it to load.
func (tr *tour) navigate(ctx context.Context, u string) {
	tr.t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		tr.t.Fatalf("tour: open %s: %v", u, err)
	}
}

// follow runs steps that lead to another document (a click on a link or
// a submit button, a key press) and waits until a new document whose
// location contains want has loaded.
func (tr *tour) follow(ctx context.Context, want string, steps ...chromedp.Action[chromedp.Void]) {
	tr.t.Helper()
	if err := followTo(ctx, want, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		tr.t.Fatalf("tour: towards %s (at %s): %v\n%s", want, loc, err, text)
	}
}

// followTo marks the current document, runs steps, then waits for an
// unmarked, loaded document at a location containing want.
func followTo(ctx context.Context, want string, steps ...chromedp.Action[chromedp.Void]) error {
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.__tourOld = true`)); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(wait, steps...); err != nil {
		return err
	}
	for {
		// Errors while the old document goes away are expected.
		fresh, err := chromedp.Run(wait, chromedp.Evaluate[bool](`window.__tourOld !== true && document.readyState === "complete"`))
		if err == nil && fresh {
			loc, err := chromedp.Run(wait, chromedp.Location())
			if err == nil && strings.Contains(loc, want) {
				return nil
			}
			if err == nil {
				// A new document elsewhere: mark it, wait for the next.
				chromedp.Do(wait, chromedp.Evaluate[chromedp.Void](`window.__tourOld = true`))
			}
		}
		select {
		case <-wait.Done():
			return fmt.Errorf("no page at %q: %w", want, wait.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// submit clicks the (first) submit button of the form matching form.
func submit(form string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(form+` button:not([type="button"]):not([type="reset"])`), chromedp.NodeVisible)
}

// signIn signs the aidant sub in from the home page; first says whether
// this is the first sign-in of the tour, when the provider's page is a
// stop (development mode).
func (tr *tour) signIn(ctx context.Context, sub, lands string, first bool) {
	tr.t.Helper()
	tr.navigate(ctx, tr.url+"/")
	tr.follow(ctx, "/authorize", chromedp.Click(chromedp.CSS(`a[href="/connexion/aidant"]`), chromedp.NodeVisible))
	if first && tr.dev {
		tr.at(ctx, "fournisseur-aidants", "the aidants' development identity provider (ProConnect stand-in): pick an identity", false)
	}
	tr.follow(ctx, lands, pickAt(ctx, sub))
}

// run walks every journey.
func (tr *tour) run() {
	t := tr.t
	t.Helper()
	tr.seen = map[string]bool{}

	// Anonymous pages.
	anon := browsertest.Incognito(t, tr.root)
	tr.navigate(anon, tr.url+"/")
	tr.at(anon, "accueil", "home page, anonymous", false)
	tr.navigate(anon, tr.url+"/connexion")
	tr.at(anon, "connexion", "sign-in choice, anonymous", false)
	tr.navigate(anon, tr.url+"/journal-public")
	tr.at(anon, "journal-public", "the public journal, anonymous", false)
	tr.navigate(anon, tr.url+"/mandats/verify")
	tr.at(anon, "verification", "checking a signed mandate: the form, anonymous", false)
	tr.navigate(anon, tr.url+"/services/documentation")
	tr.at(anon, "services-documentation", "documentation for public services, anonymous", false)
	tr.navigate(anon, tr.url+"/cette-page-n-existe-pas")
	tr.at(anon, "erreur-404", "a page that does not exist", false)

	// An aidant without a second factor is refused.
	refused := browsertest.Incognito(t, tr.root)
	tr.signIn(refused, devidp.SubDominique, "/connexion/aidant/retour", false)
	tr.at(refused, "connexion-refusee", "an aidant's sign-in refused (no second factor)", false)

	// The aidant: a mandate made with the person at her side.
	aidant := browsertest.Incognito(t, tr.root)
	tr.signIn(aidant, devidp.SubCamille, "/tableau-de-bord", true)
	tr.navigate(aidant, tr.url+"/mandats/nouveau")
	tr.at(aidant, "mandat-nouveau", "the aidant: new mandate form", false)
	tr.follow(aidant, "/brouillons/",
		chromedp.Click(chromedp.CSS(`input[name="demarches"][value="argent"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`input[name="demarches"][value="social"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`input[name="duree"][value="6m"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`input[name="methode"][value="on_site"]`), chromedp.NodeVisible),
		submit(`form[action="/mandats/nouveau"]`))
	tr.at(aidant, "brouillon", "the aidant: draft mandate, before the person identifies", false)
	tr.follow(aidant, "/authorize", submit(`form[action$="/franceconnect"]`))
	if tr.dev {
		tr.at(aidant, "fournisseur-franceconnect", "FranceConnect's development provider: the person picks an identity", true)
	}
	tr.follow(aidant, "/brouillons/", pickAt(aidant, devidp.SubJosephine))
	tr.at(aidant, "brouillon-recapitulatif", "the aidant and the person: recap of the draft, to agree and sign", false)
	tr.follow(aidant, "/attestation",
		chromedp.Click(chromedp.CSS(`input[name="accord_personne"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`input[name="confirmation_aidant"]`), chromedp.NodeVisible),
		submit(`form[action$="/signer"]`))
	tr.at(aidant, "attestation", "the aidant: attestation of the signed mandate", false)
	loc, _ := chromedp.Run(aidant, chromedp.Location())
	mandate := strings.TrimSuffix(loc, "/attestation")
	tr.navigate(aidant, mandate)
	tr.at(aidant, "mandat", "the aidant: a mandate's page", false)

	// The signed mandate, checked by anyone.
	jws, err := chromedp.Run(aidant, chromedp.Evaluate[string](`fetch(`+jsString(mandate+"/mandat.jwt")+`).then(r => r.text())`, chromedp.EvalAwaitPromise))
	if err != nil || strings.Count(jws, ".") != 2 {
		t.Fatalf("tour: the signed mandate: %v %q", err, jws)
	}
	tr.navigate(anon, tr.url+"/mandats/verify")
	tr.follow(anon, "/mandats/verify",
		chromedp.SetValue(chromedp.CSS(`textarea[name="jws"]`), strings.TrimSpace(jws), chromedp.NodeVisible),
		submit(`form[action="/mandats/verify"]`))
	tr.at(anon, "verification-resultat", "checking a signed mandate: a valid one, anonymous", false)

	// A second mandate, for a consent link the person accepts, a third
	// she refuses.
	link := func() string {
		tr.navigate(aidant, tr.url+"/mandats/nouveau")
		tr.follow(aidant, "/mandats/nouveau",
			chromedp.Click(chromedp.CSS(`input[name="demarches"][value="logement"]`), chromedp.NodeVisible),
			chromedp.Click(chromedp.CSS(`input[name="duree"][value="1m"]`), chromedp.NodeVisible),
			chromedp.Click(chromedp.CSS(`input[name="methode"][value="remote"]`), chromedp.NodeVisible),
			submit(`form[action="/mandats/nouveau"]`))
		u, err := chromedp.Run(aidant, chromedp.Evaluate[string](
			`(document.body.innerHTML.match(/https?:\/\/[^"'<\s]*\/consentement\?jeton=[^"'<\s]+/) || [""])[0].replaceAll("&amp;", "&")`))
		if err != nil || u == "" {
			t.Fatalf("tour: no consent link on the page: %v", err)
		}
		return u
	}
	accept := link()
	tr.at(aidant, "mandat-lien", "the aidant: the consent link to give the person", false)
	refuse := link()

	person := browsertest.Incognito(t, tr.root)
	tr.navigate(person, accept)
	tr.at(person, "consentement", "the person, remote consent: what she is asked", true)
	tr.follow(person, "/authorize", submit(`form[action="/consentement/franceconnect"]`))
	tr.follow(person, "/consentement/recapitulatif", pickAt(person, devidp.SubAhmed))
	tr.at(person, "consentement-recapitulatif", "the person, remote consent: what she authorises, to accept or refuse", true)
	tr.follow(person, "/consentement", submit(`form[action="/consentement/accepter"]`))
	tr.at(person, "consentement-accepte", "the person, remote consent: accepted", true)
	tr.navigate(person, accept)
	tr.at(person, "consentement-lien-utilise", "the person, remote consent: the link opened again", true)
	other := browsertest.Incognito(t, tr.root)
	tr.navigate(other, refuse)
	tr.follow(other, "/consentement", submit(`form[action="/consentement/refuser"]`))
	tr.at(other, "consentement-refuse", "the person, remote consent: refused", true)

	tr.navigate(aidant, tr.url+"/mandats")
	tr.at(aidant, "mandats", "the aidant: her structure's mandates", false)
	tr.navigate(aidant, tr.url+"/tableau-de-bord")
	tr.at(aidant, "tableau-de-bord", "the aidant: dashboard", false)

	// Acting on behalf: the chooser, reached from a public service.
	if tr.dev {
		tr.navigate(aidant, tr.url+"/dev/service")
		tr.at(aidant, "service-demo", "the demo public service of development mode, before acting", false)
		tr.follow(aidant, "/agir", chromedp.Click(chromedp.CSS(`a[href="/dev/service/agir"]`), chromedp.NodeVisible))
	} else {
		tr.navigate(aidant, tr.authorizeURL())
		if _, err := browsertest.WaitURL(aidant, "/agir"); err != nil {
			t.Fatalf("tour: the chooser: %v", err)
		}
	}
	tr.at(aidant, "agir", "the aidant: acting on behalf, choosing the person and the démarche", false)
	back := tr.serviceRedirect
	if tr.dev {
		back = "/dev/service/retour"
	}
	tr.follow(aidant, back,
		chromedp.Click(chromedp.CSS(`form[action="/agir"] input[name="demarche"][value="argent"]`), chromedp.NodeVisible),
		submit(`form[action="/agir"]:has(input[name="demarche"][value="argent"])`))
	if tr.dev {
		tr.follow(aidant, "/oidc/logout", chromedp.Click(chromedp.CSS(`a[href*="/oidc/logout"]`), chromedp.NodeVisible))
	} else {
		tr.navigate(aidant, tr.url+"/oidc/logout?"+url.Values{"client_id": {tr.serviceID}}.Encode())
	}
	tr.at(aidant, "service-quitte", "the aidant: back from a public service", false)

	// A declaration of error on the action just taken, then the
	// revocation, confirmed with a reason, and its attestation.
	tr.navigate(aidant, mandate)
	tr.follow(aidant, "/erreur", chromedp.Click(chromedp.CSS(`a[href$="/erreur"]`), chromedp.NodeVisible))
	tr.at(aidant, "mandat-erreur", "the aidant: declaring an error on an action she took", false)
	tr.navigate(aidant, mandate)
	tr.follow(aidant, "/retirer", chromedp.Click(chromedp.CSS(`a.button[href$="/retirer"]`), chromedp.NodeVisible))
	tr.at(aidant, "mandat-retrait", "the aidant: confirming the withdrawal of a whole mandate, with a reason", false)
	tr.follow(aidant, "/attestation-revocation",
		chromedp.Click(chromedp.CSS(`label[for="motif-demande_personne"]`), chromedp.NodeVisible),
		submit(`form[action$="/revoquer"]`))
	tr.at(aidant, "attestation-revocation", "the aidant: attestation of a revocation", false)
	if tr.dev {
		tr.navigate(aidant, tr.url+"/dev/courriels")
		tr.at(aidant, "courriels", "development mode: the messages the service sent", false)
		tr.navigate(aidant, tr.url+"/tableau-de-bord")
	}

	tr.follow(aidant, "/deconnecte", submit(`form[action="/deconnexion"]`))
	tr.at(aidant, "deconnecte", "the aidant: signed out", false)

	// An aidant of two structures chooses one.
	alex := browsertest.Incognito(t, tr.root)
	tr.signIn(alex, devidp.SubAlex, "/structures", false)
	tr.at(alex, "structures", "an aidant of two structures: which one she acts for", false)

	// The référent.
	referent := browsertest.Incognito(t, tr.root)
	tr.signIn(referent, devidp.SubSacha, "/tableau-de-bord", false)
	tr.navigate(referent, tr.url+"/structure")
	tr.at(referent, "structure", "the référent: her structure", false)
	tr.follow(referent, "/desactiver", chromedp.Click(chromedp.CSS(`a[href$="/desactiver"]`), chromedp.NodeVisible))
	tr.at(referent, "structure-desactivation", "the référent: confirming that an aidant is disabled, with a reason", false)
	tr.navigate(referent, tr.url+"/structure/journal")
	tr.at(referent, "structure-journal", "the référent: her structure's journal", false)
	tr.navigate(referent, tr.url+"/structure/statistiques")
	tr.at(referent, "structure-statistiques", "the référent: her structure's statistics", false)

	// The person's own space, with a mandate of hers still active (the
	// one above is revoked): made on site by the aidant, over HTTP.
	c := browser(t)
	signInAidantAt(t, c, tr.url, devidp.SubCamille)
	createOnSite(t, c, &testServer{URL: tr.url}, devidp.SubJosephine, onSiteForm("argent", "social"))
	josephine := browsertest.Incognito(t, tr.root)
	tr.navigate(josephine, tr.url+"/mon-espace")
	tr.at(josephine, "mon-espace-connexion", "the person: signing in to her space", true)
	tr.follow(josephine, "/authorize", submit(`form[action="/mon-espace/connexion"]`))
	tr.follow(josephine, "/mon-espace", pickAt(josephine, devidp.SubJosephine))
	tr.at(josephine, "mon-espace", "the person: her space, mandates and actions", true)
	tr.follow(josephine, "/mon-espace/actions/", chromedp.Click(chromedp.CSS(`a.receipt`), chromedp.NodeVisible))
	tr.at(josephine, "mon-espace-recu", "the person: the receipt of an action, with its proof", true)
	tr.navigate(josephine, tr.url+"/mon-espace")
	tr.follow(josephine, "/mon-espace/objection/", chromedp.Click(chromedp.CSS(`a.object`), chromedp.NodeVisible))
	tr.at(josephine, "mon-espace-objection", "the person: saying an action was not what she agreed to", true)
	tr.follow(josephine, "/mon-espace/objection/",
		chromedp.Click(chromedp.CSS(`label[for="raison-pas_demande"]`), chromedp.NodeVisible),
		submit(`form[action^="/mon-espace/objection/"]`))
	tr.at(josephine, "mon-espace-objection-fin", "the person: her objection recorded", true)
	tr.navigate(referent, tr.url+"/structure/objections")
	tr.at(referent, "structure-objections", "the référent: the persons' objections", false)
	tr.follow(referent, "/structure/objections/obj_", chromedp.Click(chromedp.CSS(`a[href^="/structure/objections/obj_"]`), chromedp.NodeVisible))
	tr.at(referent, "structure-objection", "the référent: one objection, to answer", false)
	tr.navigate(josephine, tr.url+"/mon-espace")
	revoke, err := chromedp.Run(josephine, chromedp.Evaluate[string](
		`(document.querySelector('a[href^="/mon-espace/mandats/"][href$="/revoquer"]') || {}).href || ""`))
	if err != nil || revoke == "" {
		t.Fatalf("tour: no revocation link in the person's space: %v", err)
	}
	tr.navigate(josephine, revoke)
	tr.at(josephine, "mon-espace-revocation", "the person: withdrawing her consent", true)
	tr.follow(josephine, "/mon-espace", submit(`form[action$="/revoquer"]`))
	tr.follow(josephine, "/mon-espace/deconnecte", submit(`form[action="/mon-espace/deconnexion"]`))
	tr.at(josephine, "mon-espace-deconnecte", "the person: signed out of her space", true)
}

// signInAidantAt signs the aidant sub in with an HTTP client, on the
// instance at u.
func signInAidantAt(t *testing.T, c *http.Client, u, sub string) {
	t.Helper()
	if page, status, body := pickIdentity(t, c, u+"/connexion/aidant", sub); status != http.StatusOK || !strings.Contains(page, "/tableau-de-bord") {
		t.Fatalf("sign-in of %s: %d at %s\n%s", sub, status, page, body)
	}
}

// authorizeURL is a public service's authorization request (production
// mode), which leads the signed-in aidant to the chooser.
func (tr *tour) authorizeURL() string {
	verifier := "tour-verifier-0123456789-0123456789-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {tr.serviceID}, "redirect_uri": {tr.serviceRedirect},
		"scope": {"openid identite_pivot"}, "state": {"tour-state"}, "nonce": {"tour-nonce"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	return tr.url + "/oidc/authorize?" + q.Encode()
}

// devTour is the tour of a development instance.
func devTour(t *testing.T, root context.Context, visit func(context.Context, tourStop)) *tour {
	t.Helper()
	s := startDev(t, "")
	return &tour{t: t, url: s.URL, dev: true, root: root, visit: visit}
}

// prodTour is the tour of an instance as an operator deploys it — a
// configuration file, no development mode — whose identity providers
// are the development providers served apart (standing in for ProConnect
// and FranceConnect) and whose public service is registered with the
// command line.
func prodTour(t *testing.T, root context.Context, visit func(context.Context, tourStop)) *tour {
	t.Helper()
	const siret, siret2 = "98765432100015", "13579246800013"
	r := newRPInstance(t)
	mux := http.NewServeMux()
	idps := httptest.NewServer(mux)
	t.Cleanup(idps.Close)
	aidants, err := devidp.New(devidp.Options{Issuer: idps.URL + "/aidants", Kind: devidp.KindAidants,
		Identities: devidp.AidantIdentities(siret),
		Clients: []devidp.Client{{ID: "aidants", Secret: "s3cret-aidants", RedirectURIs: []string{r.public + "/connexion/aidant/retour"},
			PostLogoutRedirectURIs: []string{r.public + "/deconnecte"}}}})
	if err != nil {
		t.Fatal(err)
	}
	fc, err := devidp.New(devidp.Options{Issuer: idps.URL + "/franceconnect", Kind: devidp.KindFranceConnect,
		Identities: devidp.UsagerIdentities(),
		Clients: []devidp.Client{{ID: "fc", Secret: "s3cret-fc", RedirectURIs: []string{r.public + "/franceconnect/retour"},
			PostLogoutRedirectURIs: []string{r.public + "/mon-espace/deconnecte", r.public + "/deconnecte"}}}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/aidants/", aidants)
	mux.Handle("/franceconnect/", fc)
	// The public service's own page, where the browser comes back.
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html lang="fr"><title>Service</title><p>Service public</p></html>`)
	}))
	t.Cleanup(svc.Close)
	r.configure(
		fmt.Sprintf("issuer = %q\nclient_id = \"aidants\"\nclient_secret = \"s3cret-aidants\"", aidants.Issuer()),
		fmt.Sprintf("issuer = %q\nclient_id = \"fc\"\nclient_secret = \"s3cret-fc\"", fc.Issuer()))
	c := r.cli()
	c.ok("org", "add", "--name", "France services de Nantes", "--siret", siret)
	c.ok("org", "add", "--name", "Médiathèque de Rezé", "--siret", siret2)
	for _, a := range []struct {
		email, given, family, org string
		referent                  bool
	}{
		{devidp.EmailCamille, "Camille", "Martin", siret, false},
		{devidp.EmailDominique, "Dominique", "Bernard", siret, false},
		{devidp.EmailSacha, "Sacha", "Petit", siret, true},
		{devidp.EmailAlex, "Alex", "Moreau", siret, false},
		{devidp.EmailAlex, "Alex", "Moreau", siret2, false},
	} {
		args := []string{"aidant", "add", "--org", a.org, "--email", a.email, "--given-name", a.given, "--family-name", a.family, "--habilitated-until", "2099-12-31"}
		if a.referent {
			args = append(args, "--referent")
		}
		c.ok(args...)
	}
	redirect := svc.URL + "/retour"
	out := c.ok("service", "add", "--name", "Impôts (test)", "--redirect-uri", redirect, "--demarches", "argent,social", "--auth", "client_secret_basic")
	m := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("service add printed:\n%s", out)
	}
	s := r.serve()
	return &tour{t: t, url: s.URL, root: root, visit: visit, serviceID: m[1], serviceRedirect: redirect}
}

// TestChooserFormsMayReachTheService: in production mode the public
// service is on another origin, where the chooser's forms end (a redirect
// with the code, or the cancellation). Browsers apply the page's CSP
// form-action to a form's redirects, so the chooser's policy names the
// service's registered origin — and only for that page.
func TestChooserFormsMayReachTheService(t *testing.T) {
	tr := prodTour(t, nil, nil)
	c := browser(t)
	signInAidantAt(t, c, tr.url, devidp.SubCamille)
	svc, err := url.Parse(tr.serviceRedirect)
	if err != nil {
		t.Fatal(err)
	}
	origin := svc.Scheme + "://" + svc.Host
	formAction := func(u string) string {
		t.Helper()
		res, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d at %s", u, res.StatusCode, res.Request.URL)
		}
		_, fa, _ := strings.Cut(res.Header.Get("Content-Security-Policy"), "form-action ")
		fa, _, _ = strings.Cut(fa, ";")
		return fa
	}
	if fa := formAction(tr.authorizeURL()); !slices.Contains(strings.Fields(fa), origin) {
		t.Errorf("the chooser's form-action %q does not allow the service at %s", fa, origin)
	}
	if fa := formAction(tr.url + "/tableau-de-bord"); strings.Contains(fa, origin) {
		t.Errorf("another page's form-action %q allows the service at %s", fa, origin)
	}
}
