package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"aidants/devidp"
	"aidants/internal/browsertest"
	"aidants/mandate"
)

// TestBrowserActOnBehalf: the aidant, in Chromium, goes from the dashboard
// to the demo public service, chooses "Agir pour une personne", picks the
// person and the démarche, and the service's page shows both identities;
// then the person's own space lists the action.
func TestBrowserActOnBehalf(t *testing.T) {
	s := startDev(t, "")
	aidant := browser(t)
	signInAidant(t, aidant, s, devidp.SubCamille)
	id := createOnSite(t, aidant, s, devidp.SubJosephine, onSiteForm("argent", "social"))

	ctx := browsertest.New(t, 120*time.Second)
	browserSignIn(t, ctx, s, devidp.SubCamille)
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/tableau-de-bord"),
		chromedp.Click(chromedp.CSS(`a[href="/dev/service"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`a[href="/dev/service/agir"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`ul.choices`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, ctx); !strings.Contains(text, "Joséphine Marie Lefèvre") || !strings.Contains(text, "Service démo (développement)") {
		t.Fatalf("the chooser:\n%s", text)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`input[name="demarche"][value="social"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`ul.choices form button[type="submit"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.ID("agit")),
	)
	if err != nil {
		t.Fatal(err)
	}
	text := textOf(t, ctx)
	for _, want := range []string{"Joséphine Marie Lefèvre", "née le 12 mars 1948",
		"Démarche faite par Camille Martin (" + demoName + ", SIRET " + demoSIRET + "), au titre du mandat n° " + mandate.Ref(id),
		"Démarche autorisée : Social - Santé"} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo service's page lacks %q:\n%s", want, text)
		}
	}
	// Leaving the service brings the aidant back to Aidants.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href*="/oidc/logout"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/tableau-de-bord"]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, ctx); !strings.Contains(text, "Vous avez quitté « Service démo (développement) »") {
		t.Errorf("after leaving the service:\n%s", text)
	}

	// The person, in another browser context, sees the action in her space.
	person := browsertest.Incognito(t, ctx)
	err = chromedp.Do(person,
		chromedp.Navigate(s.URL+"/mon-espace"),
		chromedp.Click(chromedp.CSS(`form[action="/mon-espace/connexion"] button`), chromedp.NodeVisible),
		pickAt(person, devidp.SubJosephine),
		chromedp.WaitVisible(chromedp.CSS(`ol.history`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, person); !strings.Contains(text, "Camille Martin, de "+demoName+", a ouvert « Service démo (développement) » pour vous, pour la démarche « Social - Santé »") {
		t.Fatalf("the person's space does not list the action:\n%s", text)
	}
}
