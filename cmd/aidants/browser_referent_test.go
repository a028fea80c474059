package main

import (
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"aidants/devidp"
	"aidants/internal/browsertest"
)

// TestBrowserReferentDisablesAnAidant: a référent disables an aidant who
// is signed in elsewhere; the aidant's next click lands on the sign-in
// page; the référent's journal shows her sign-in and her disabling; the
// CSV export holds those rows.
func TestBrowserReferentDisablesAnAidant(t *testing.T) {
	s := startDev(t, "")
	camille := browsertest.New(t, 120*time.Second)
	browserSignIn(t, camille, s, devidp.SubCamille)

	sacha := browsertest.Incognito(t, camille)
	browserSignIn(t, sacha, s, devidp.SubSacha)
	id := aidantID(t, s, devidp.EmailCamille)
	err := chromedp.Do(sacha,
		chromedp.Click(chromedp.CSS(`a[href="/structure"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`a[href="/structure/aidants/`+id+`/desactiver"]`), chromedp.NodeVisible),
		chromedp.Click(chromedp.ID("motif-depart"), chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS(`button.danger`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`.notice`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(t, sacha); !strings.Contains(text, "L'aidant a été désactivé") || !strings.Contains(text, "Désactivé") {
		t.Fatalf("after disabling:\n%s", text)
	}

	// Camille's next click.
	err = chromedp.Do(camille, chromedp.Click(chromedp.CSS(`header a[href="/mandats"]`), chromedp.NodeVisible))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := browsertest.WaitURL(camille, "/connexion"); err != nil {
		t.Fatalf("Camille's next click: %v", err)
	}

	// The journal, filtered on Camille.
	err = chromedp.Do(sacha,
		chromedp.Navigate(s.URL+"/structure/journal?aidant="+id),
		chromedp.WaitVisible(chromedp.CSS(`table.journal`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	text := textOf(t, sacha)
	for _, want := range []string{"Aidant désactivé", "Connexion d'un aidant", "Camille Martin"} {
		if !strings.Contains(text, want) {
			t.Errorf("the journal lacks %q:\n%s", want, text)
		}
	}
	href, err := chromedp.Run(sacha, chromedp.AttributeValue(chromedp.CSS(`a[href^="/structure/journal.csv"]`), "href"))
	if err != nil || !href.Exists {
		t.Fatalf("no export link: %v", err)
	}
	body, err := chromedp.Run(sacha, chromedp.Evaluate[string](`fetch(`+jsString(href.Value)+`).then(r => r.text())`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	cr := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "\ufeff")))
	cr.Comma = ';'
	rows, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("the export is not CSV: %v\n%s", err, body)
	}
	types := map[string]int{}
	for _, r := range rows[1:] {
		if r[3] != "Camille Martin" {
			t.Errorf("a row of someone else: %v", r)
		}
		types[r[7]]++
	}
	if types["aidant.login"] == 0 || types["aidant.disabled"] != 1 {
		t.Errorf("the export's rows: %v", types)
	}
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
