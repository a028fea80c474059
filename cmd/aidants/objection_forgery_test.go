package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"aidants/devidp"
)

// postCrossSite posts a form as another site would, with the c's cookies.
func postCrossSite(t *testing.T, c *http.Client, u string, form url.Values) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://ailleurs.example")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestForgedObjectionAnswerDeclarationAndSwitchAreRefused: a page of
// another site cannot make a signed-in person object or turn their emails
// off, a signed-in référent answer, or a signed-in aidant declare an
// error; nothing is recorded, and the same forms from the site itself
// work.
func TestForgedObjectionAnswerDeclarationAndSwitchAreRefused(t *testing.T) {
	s := startDev(t, "")
	db := openDB(t, s)
	camille := browser(t)
	signInAidant(t, camille, s, devidp.SubCamille)
	id := createOnSite(t, camille, s, devidp.SubJosephine, onSiteForm("argent"))
	idx := actAtDemo(t, camille, s, db, "argent")
	person := browser(t)
	personSignIn(t, person, s, devidp.SubJosephine)
	sacha := browser(t)
	signInAidant(t, sacha, s, devidp.SubSacha)

	state := func() string {
		return fmt.Sprint(count(t, db, `SELECT COUNT(*) FROM objections`), count(t, db, `SELECT COUNT(*) FROM error_declarations`),
			count(t, db, `SELECT COUNT(*) FROM free_texts`), count(t, db, `SELECT COUNT(*) FROM mandates WHERE revoked_at IS NOT NULL`),
			count(t, db, `SELECT COUNT(*) FROM usagers WHERE action_mails`),
			count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type IN ('usager.objected', 'objection.handled', 'action.error_declared', 'usager.notifications_changed')`))
	}
	objURL := s.URL + "/mon-espace/objection/" + idx
	errURL := s.URL + "/mandats/" + id + "/actions/" + idx + "/erreur"
	before := state()
	for _, f := range []struct {
		name string
		c    *http.Client
		u    string
		form url.Values
	}{
		{"objection", person, objURL, url.Values{"raison": {"inconnu"}, "retirer": {"oui"}}},
		{"switch", person, s.URL + "/mon-espace/courriels", url.Values{"courriels": {"non"}}},
		{"declaration", camille, errURL, url.Values{"erreur": {"x"}, "correction": {"y"}}},
	} {
		if code := postCrossSite(t, f.c, f.u, f.form); code != http.StatusForbidden {
			t.Errorf("a cross-site %s: %d", f.name, code)
		}
	}
	if after := state(); after != before {
		t.Fatalf("forged requests changed something: %s → %s", before, after)
	}
	// From the site itself, the objection is recorded; a forged answer is
	// still refused.
	if _, status, _ := postForm(t, person, objURL, url.Values{"raison": {"inconnu"}}); status != http.StatusOK {
		t.Fatalf("the objection from the site: %d", status)
	}
	var oid string
	if err := db.R.Get(&oid, `SELECT id FROM objections`); err != nil {
		t.Fatal(err)
	}
	before = state()
	if code := postCrossSite(t, sacha, s.URL+"/structure/objections/"+oid, url.Values{"reponse": {"Vu."}}); code != http.StatusForbidden {
		t.Errorf("a cross-site answer: %d", code)
	}
	if after := state(); after != before {
		t.Fatalf("a forged answer changed something: %s → %s", before, after)
	}
}
