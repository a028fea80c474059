package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"aidants/devidp"
)

func TestDevServerSignsInAnAidantAndRefusesWithoutMFA(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)

	// The home page offers the aidant's sign-in.
	_, status, body := get(t, c, s.URL+"/")
	if status != http.StatusOK || !strings.Contains(body, "Je suis aidant") || !strings.Contains(body, "Mode développement") {
		t.Fatalf("home: %d\n%s", status, body)
	}

	// Camille, with a second factor, lands on her dashboard.
	page, status, body := signInAidant(t, c, s, devidp.SubCamille)
	if status != http.StatusOK || !strings.HasSuffix(page, "/tableau-de-bord") {
		t.Fatalf("Camille: %d at %s\n%s", status, page, body)
	}
	for _, want := range []string{"Bonjour Camille", demoName, "Mes mandats"} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}

	// Dominique, without one, is refused with a clear page.
	other := browser(t)
	_, status, body = signInAidant(t, other, s, devidp.SubDominique)
	if status != http.StatusForbidden || !strings.Contains(body, "Double authentification nécessaire") {
		t.Fatalf("Dominique: %d\n%s", status, body)
	}
	if _, _, body := get(t, other, s.URL+"/tableau-de-bord"); strings.Contains(body, "Bonjour") {
		t.Fatal("a refused aidant reached the dashboard")
	}

	// Logout ends the session at the provider too, and the old cookie is
	// worth nothing afterwards.
	u, _ := url.Parse(s.URL)
	old := c.Jar.Cookies(u)
	page, status, body = postForm(t, c, s.URL+"/deconnexion", nil)
	if status != http.StatusOK || !strings.Contains(page, "/deconnecte") || !strings.Contains(body, "déconnecté") {
		t.Fatalf("logout: %d at %s\n%s", status, page, body)
	}
	replay := browser(t)
	replay.Jar.SetCookies(u, old)
	page, _, _ = get(t, replay, s.URL+"/tableau-de-bord")
	if !strings.Contains(page, "/connexion") {
		t.Fatalf("the old cookie still opens %s", page)
	}
}

func TestCrossSitePostIsRefusedAndChangesNothing(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/deconnexion", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site logout: %d, want 403", resp.StatusCode)
	}
	if _, _, body := get(t, c, s.URL+"/tableau-de-bord"); !strings.Contains(body, "Bonjour Camille") {
		t.Fatal("the cross-site request ended the session")
	}
}

func TestOperatorDisablesAnAidantWhileSheIsSignedIn(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	if _, _, body := signInAidant(t, c, s, devidp.SubCamille); !strings.Contains(body, "Bonjour Camille") {
		t.Fatal("sign-in failed")
	}
	// The command line writes beside the running server, on the same
	// database.
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"aidant", "disable", "--dev", "--data", s.Data, "--email", devidp.EmailCamille, "--reason", "Fin de contrat"}, &out, &errb); err != nil {
		t.Fatalf("aidant disable: %v\n%s", err, errb.String())
	}
	page, _, body := get(t, c, s.URL+"/tableau-de-bord")
	if !strings.Contains(page, "/connexion") || !strings.Contains(body, "Votre session a pris fin") {
		t.Fatalf("after disable: at %s\n%s", page, body)
	}
	// And she cannot sign in again; the page says nothing of why.
	_, status, body := signInAidant(t, browser(t), s, devidp.SubCamille)
	if status != http.StatusForbidden || !strings.Contains(body, "Votre compte ne permet pas") {
		t.Fatalf("disabled sign-in: %d\n%s", status, body)
	}
	// One linear history, written by two processes' worth of writers.
	out.Reset()
	if err := run(context.Background(), []string{"audit", "verify", "--dev", "--data", s.Data}, &out, &errb); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	if !strings.Contains(out.String(), "OK") {
		t.Fatalf("audit verify: %s", out.String())
	}
}

func TestRefusedAccountsAllGetTheSamePage(t *testing.T) {
	s := startDev(t, "")
	var out, errb bytes.Buffer
	// Alex is disabled; Sacha's habilitation has ended.
	if err := run(context.Background(), []string{"aidant", "disable", "--dev", "--data", s.Data, "--email", devidp.EmailAlex, "--reason", "Fin de contrat"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	if err := run(context.Background(), []string{"aidant", "habilitate", "--dev", "--data", s.Data, "--email", devidp.EmailSacha, "--until", "2020-01-01"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	_, st1, disabled := signInAidant(t, browser(t), s, devidp.SubAlex)
	_, st2, expired := signInAidant(t, browser(t), s, devidp.SubSacha)
	main := func(body string) string {
		_, after, _ := strings.Cut(body, "<main")
		before, _, _ := strings.Cut(after, "</main>")
		return before
	}
	if st1 != http.StatusForbidden || st2 != http.StatusForbidden || main(disabled) != main(expired) {
		t.Fatalf("refusals differ:\n%d %s\n%d %s", st1, main(disabled), st2, main(expired))
	}
}

func TestDevIdentitiesSurviveARestartOnAnotherPort(t *testing.T) {
	dir := t.TempDir()
	first := startDev(t, dir)
	c := browser(t)
	signInAidant(t, c, first, devidp.SubCamille)
	createOnSite(t, c, first, devidp.SubJosephine, onSiteForm("argent"))
	// A second server on the same data (as after a restart with another
	// --listen): the same aidant and the same person are found.
	second := startDev(t, dir)
	c2 := browser(t)
	if _, _, body := signInAidant(t, c2, second, devidp.SubCamille); !strings.Contains(body, "Bonjour Camille") || !strings.Contains(body, "Lefèvre") {
		t.Fatalf("after the restart:\n%s", body)
	}
	// The person identifies again through the new issuer: still one person,
	// whose new mandate supersedes the first.
	createOnSite(t, c2, second, devidp.SubJosephine, onSiteForm("argent"))
	db := openDB(t, second)
	if n := count(t, db, `SELECT COUNT(*) FROM usagers`); n != 1 {
		t.Fatalf("%d usagers, want the same one", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'mandate.superseded'`); n != 1 {
		t.Fatalf("%d supersessions, want 1", n)
	}
}
