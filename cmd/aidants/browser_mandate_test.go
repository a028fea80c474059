package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"aidants/devidp"
	"aidants/internal/browsertest"
)

// browserSignIn signs the aidant sub in, in the tab of ctx.
func browserSignIn(t *testing.T, ctx context.Context, s *testServer, sub string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/"),
		chromedp.Click(chromedp.CSS(`a[href="/connexion/aidant"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`button[value="`+sub+`"]`), chromedp.NodeVisible),
	)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := browsertest.WaitURL(ctx, "/tableau-de-bord"); err != nil {
		t.Fatal(err)
	}
}

// pickAt picks an identity at a development provider's page.
func pickAt(ctx context.Context, sub string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(`button[value="`+sub+`"]`), chromedp.NodeVisible)
}

func textOf(t *testing.T, ctx context.Context) string {
	t.Helper()
	text, err := browsertest.Text(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// pdfPages counts the pages of a PDF Chromium printed.
func pdfPages(pdf []byte) int {
	return len(regexp.MustCompile(`/Type\s*/Page[^s]`).FindAll(pdf, -1))
}

// TestBrowserOnSiteMandateAttestationAndRevocation: the aidant creates a
// mandate with the person at her side, the person identifies with
// FranceConnect on the same screen, both confirm, the attestation prints
// on one A4 page, and the aidant revokes the mandate.
func TestBrowserOnSiteMandateAttestationAndRevocation(t *testing.T) {
	s := startDev(t, "")
	ctx := browsertest.New(t, 120*time.Second)
	browserSignIn(t, ctx, s, devidp.SubCamille)
	err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/mandats/nouveau"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`input[name="demarches"][value="argent"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`input[name="demarches"][value="logement"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.ID("duree-6m"), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`form[action="/mandats/nouveau"] button[type="submit"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`form[action$="/franceconnect"] button`), chromedp.NodeVisible),
		pickAt(ctx, devidp.SubJosephine),
		chromedp.WaitVisible(chromedp.ID("accord")),
	)
	if err != nil {
		t.Fatal(err)
	}
	recap := textOf(t, ctx)
	for _, want := range []string{"Joséphine Marie Lefèvre", "née le 12 mars 1948", "Argent - Impôts - Consommation", "Logement", "6 mois", demoName} {
		if !strings.Contains(recap, want) {
			t.Errorf("recap lacks %q:\n%s", want, recap)
		}
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("accord")),
		chromedp.Click(chromedp.ID("confirmation")),
		chromedp.Click(chromedp.CSS(`form[action$="/signer"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`article.attestation`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.HasSuffix(loc, "/attestation") {
		t.Fatalf("after signing: %s", loc)
	}
	pdf, err := chromedp.Run(ctx, chromedp.PrintToPDF(chromedp.PDFPaper(chromedp.PaperA4), chromedp.PDFPreferCSSPageSize()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF")) || pdfPages(pdf) != 1 {
		t.Fatalf("the attestation prints on %d pages, want 1", pdfPages(pdf))
	}
	// Revocation from the mandate page.
	err = chromedp.Do(ctx,
		chromedp.Navigate(strings.TrimSuffix(loc, "/attestation")),
		chromedp.Click(chromedp.CSS(`a[href$="/retirer"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.ID("motif-autre"), chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.ID("precision"), "La personne a retiré son accord", chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`article.attestation`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	text := textOf(t, ctx)
	if !strings.Contains(text, "Attestation de retrait") || !strings.Contains(text, "Une autre raison") {
		t.Fatalf("revocation attestation:\n%s", text)
	}
	pdf, err = chromedp.Run(ctx, chromedp.PrintToPDF(chromedp.PDFPaper(chromedp.PaperA4), chromedp.PDFPreferCSSPageSize()))
	if err != nil || pdfPages(pdf) != 1 {
		t.Fatalf("the revocation attestation prints on %d pages (%v)", pdfPages(pdf), err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+"/mandats?etat=revoques")); err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, ctx); !strings.Contains(text, "Lefèvre") || !strings.Contains(text, "Retiré") {
		t.Fatalf("revoked list:\n%s", text)
	}
}

// TestBrowserRemoteConsentAcceptedAndRefused: the aidant makes two consent
// links; one person accepts in a browser of her own, another refuses in
// a third; the aidant's list shows both outcomes.
func TestBrowserRemoteConsentAcceptedAndRefused(t *testing.T) {
	s := startDev(t, "")
	ctx := browsertest.New(t, 120*time.Second)
	browserSignIn(t, ctx, s, devidp.SubCamille)
	link := func() string {
		t.Helper()
		err := chromedp.Do(ctx,
			chromedp.Navigate(s.URL+"/mandats/nouveau"),
			chromedp.Click(chromedp.CSS(`input[name="demarches"][value="social"]`), chromedp.NodeVisible),
			chromedp.Click(chromedp.ID("duree-1m")),
			chromedp.Click(chromedp.ID("methode-distance")),
			chromedp.Click(chromedp.CSS(`form[action="/mandats/nouveau"] button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.ID("lien")),
		)
		if err != nil {
			t.Fatal(err)
		}
		u, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("lien")))
		if err != nil || !strings.Contains(u, "/consentement?jeton=") {
			t.Fatalf("link %q: %v", u, err)
		}
		return u
	}
	accept, refuse := link(), link()

	person := browsertest.Incognito(t, ctx)
	err := chromedp.Do(person,
		chromedp.Navigate(accept),
		chromedp.Click(chromedp.CSS(`form[action="/consentement/franceconnect"] button`), chromedp.NodeVisible),
		pickAt(person, devidp.SubAhmed),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/consentement/accepter"] button`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, person); !strings.Contains(text, "Ahmed Benali") || !strings.Contains(text, "Social - Santé") {
		t.Fatalf("the person's recap:\n%s", text)
	}
	err = chromedp.Do(person,
		chromedp.Click(chromedp.CSS(`form[action="/consentement/accepter"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`.success`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	other := browsertest.Incognito(t, ctx)
	err = chromedp.Do(other,
		chromedp.Navigate(refuse),
		chromedp.Click(chromedp.CSS(`form[action="/consentement/refuser"] button`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`.notice`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, other); !strings.Contains(text, "Votre refus est enregistré") {
		t.Fatalf("refusal page:\n%s", text)
	}
	// The first link, opened again by the person, serves no more.
	if err := chromedp.Do(person, chromedp.Navigate(accept)); err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, person); !strings.Contains(text, "Ce lien a déjà servi") {
		t.Fatalf("reused link:\n%s", text)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+"/mandats")); err != nil {
		t.Fatal(err)
	}
	list := textOf(t, ctx)
	for _, want := range []string{"Ahmed Benali", "accepté", "refusé", "En cours"} {
		if !strings.Contains(list, want) {
			t.Errorf("the aidant's list lacks %q:\n%s", want, list)
		}
	}
}

// TestBrowserPersonSpace: the person signs in to her space, sees the
// mandate an aidant created with her and the actions taken, downloads a
// receipt that the command line verifies, revokes the mandate; the
// aidant's view shows it revoked.
func TestBrowserPersonSpace(t *testing.T) {
	s := startDev(t, "")
	aidant := browser(t)
	signInAidant(t, aidant, s, devidp.SubCamille)
	id := createOnSite(t, aidant, s, devidp.SubJosephine, onSiteForm("argent", "social"))

	ctx := browsertest.New(t, 120*time.Second)
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/"),
		chromedp.Click(chromedp.CSS(`a[href="/mon-espace"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`form[action="/mon-espace/connexion"] button`), chromedp.NodeVisible),
		pickAt(ctx, devidp.SubJosephine),
		chromedp.WaitVisible(chromedp.CSS(`ol.history`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	text := textOf(t, ctx)
	for _, want := range []string{"Bonjour Joséphine Marie", demoName, "Argent - Impôts - Consommation", "Social - Santé",
		"Vous avez donné votre accord", "Préparé par Camille Martin"} {
		if !strings.Contains(text, want) {
			t.Errorf("the space lacks %q", want)
		}
	}
	// Each history line leads to its proof, in plain French, from which
	// the receipt is downloaded.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a.receipt`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`a[href^="/mon-espace/recus/"]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, ctx); !strings.Contains(text, "Cette action est inscrite au journal public sous le n°") ||
		!strings.Contains(text, "Télécharger le reçu (pour un vérificateur)") {
		t.Fatalf("the proof page:\n%s", text)
	}
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`a[href^="/mon-espace/recus/"]`), "href"))
	if err != nil || !href.Exists {
		t.Fatalf("no receipt link: %v", err)
	}
	// The receipt, as the person's browser downloads it, once its
	// checkpoint is cosigned by the development witness.
	var receipt string
	for range 100 {
		if receipt, err = chromedp.Run(ctx, chromedp.Evaluate[string](`fetch("`+href.Value+`").then(r => r.text())`, chromedp.EvalAwaitPromise)); err != nil {
			t.Fatal(err)
		}
		if witnessedTrue.MatchString(receipt) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	file := filepath.Join(t.TempDir(), "recu.json")
	os.WriteFile(file, []byte(receipt), 0o600)
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"audit", "verify-receipt", file, "--dev", "--data", s.Data}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "valid:") {
		t.Fatalf("the downloaded receipt: %v %s", err, out.String())
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/mon-espace"),
		chromedp.Click(chromedp.CSS(`a[href="/mon-espace/mandats/`+id+`/revoquer"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`button.danger`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`.success`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, ctx); !strings.Contains(text, "Vous avez retiré votre mandat") || !strings.Contains(text, "Retiré") {
		t.Fatalf("after revocation:\n%s", text)
	}
	if _, _, view := get(t, aidant, s.URL+"/mandats/"+id); !strings.Contains(view, "Retiré") {
		t.Fatal("the aidant's view does not show the mandate revoked")
	}
}
