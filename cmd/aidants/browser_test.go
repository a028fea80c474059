package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"aidants/devidp"
	"aidants/internal/browsertest"
)

// TestBrowserSignInRefusalAndLogout walks the foundation journey in a real
// headless Chromium: "Je suis aidant", the MFA aidant at the development
// provider, the dashboard with her name; the aidant without MFA sees the
// refusal; after logout the old cookie no longer opens the dashboard.
func TestBrowserSignInRefusalAndLogout(t *testing.T) {
	s := startDev(t, "")
	ctx := browsertest.New(t, 90*time.Second)

	err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/"),
		chromedp.Click(chromedp.CSS(`a[href="/connexion/aidant"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`button[value="`+devidp.SubCamille+`"]`)),
		chromedp.Click(chromedp.CSS(`button[value="`+devidp.SubCamille+`"]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := browsertest.WaitURL(ctx, "/tableau-de-bord"); err != nil {
		t.Fatal(err)
	}
	h1, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	if err != nil || h1 != "Bonjour Camille" {
		t.Fatalf("dashboard heading %q, %v", h1, err)
	}
	if text, _ := browsertest.Text(ctx); !strings.Contains(text, demoName) || !strings.Contains(text, "Aucun mandat pour le moment") {
		t.Fatalf("dashboard:\n%s", text)
	}
	old, err := browsertest.Cookies(ctx, s.URL)
	if err != nil || len(old) == 0 {
		t.Fatalf("no session cookie: %v", err)
	}
	for _, c := range old {
		if c.Name == "aidants-session" && (!c.HTTPOnly || c.SameSite != "Lax") {
			t.Errorf("session cookie flags: HttpOnly=%v SameSite=%q", c.HTTPOnly, c.SameSite)
		}
	}

	// Logout: locally and at the provider, then back on our page.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`form[action="/deconnexion"] button`), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	if _, err := browsertest.WaitURL(ctx, "/deconnecte"); err != nil {
		t.Fatal(err)
	}
	// The old cookie, put back by hand, opens nothing.
	if err := browsertest.SetCookies(ctx, s.URL, old); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+"/tableau-de-bord")); err != nil {
		t.Fatal(err)
	}
	loc, err := browsertest.WaitURL(ctx, "/connexion")
	if err != nil {
		t.Fatalf("old cookie: at %s: %v", loc, err)
	}
	if text, _ := browsertest.Text(ctx); !strings.Contains(text, "Votre session a pris fin") {
		t.Fatalf("sign-in page after the old cookie:\n%s", text)
	}

	// The aidant without a second factor is refused, in her own browser.
	other := browsertest.Incognito(t, ctx)
	err = chromedp.Do(other,
		chromedp.Navigate(s.URL+"/"),
		chromedp.Click(chromedp.CSS(`a[href="/connexion/aidant"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`button[value="`+devidp.SubDominique+`"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`div.alert`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	h1, _ = chromedp.Run(other, chromedp.Text(chromedp.CSS("h1")))
	if h1 != "Double authentification nécessaire" {
		t.Fatalf("refusal heading %q", h1)
	}
}
