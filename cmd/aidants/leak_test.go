package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"aidants/devidp"
	"aidants/store"
)

// TestNoTokenSecretOrIdentityInLogsOrEvents runs sign-ins, a refusal and
// a logout, then searches the application log and every event body for
// tokens, codes, states, emails and names.
func TestNoTokenSecretOrIdentityInLogsOrEvents(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	postForm(t, c, s.URL+"/deconnexion", nil)
	signInAidant(t, browser(t), s, devidp.SubDominique)
	signInAidant(t, browser(t), s, devidp.SubSacha)

	db, err := store.Open(context.Background(), "sqlite", filepath.Join(s.Data, "aidants.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var bodies []string
	if err := db.R.Select(&bodies, `SELECT CAST(body AS TEXT) FROM audit_events`); err != nil {
		t.Fatal(err)
	}
	forbidden := []*regexp.Regexp{
		regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}`), // a JWT
		regexp.MustCompile(`(?i)\b(code|state|nonce|id_token|access_token|client_secret)=`),
		regexp.MustCompile(`[a-z.]+@[a-z.-]+\.example`), // an email
		regexp.MustCompile(`Camille|Martin|Dominique|Bernard|Sacha|Petit`),
	}
	for _, text := range append(bodies, s.Log.String()) {
		for _, re := range forbidden {
			if m := re.FindString(text); m != "" {
				t.Errorf("found %q (%s) in:\n%s", m, re, firstLines(text))
			}
		}
	}
	if len(bodies) < 15 {
		t.Fatalf("only %d events: the journeys were not journaled", len(bodies))
	}
}

func firstLines(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return strings.TrimSpace(s)
}
