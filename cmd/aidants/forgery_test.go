package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/devidp"
	"aidants/keys"
)

// TestForgedMandatesAreRejectedByThePageAndTheCommandLine forges a
// genuine mandate in the usual ways and submits each forgery to the
// verification page (pasted) and to `aidants mandate verify`.
func TestForgedMandatesAreRejectedByThePageAndTheCommandLine(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	id := createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent"))
	_, _, jws := get(t, c, s.URL+"/mandats/"+id+"/mandat.jwt")
	parts := strings.Split(jws, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	payload := func() map[string]any {
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var m map[string]any
		json.Unmarshal(raw, &m)
		return m
	}
	// The instance's own key, to forge what only a key holder could:
	// a wrong typ, an expired mandate.
	cfg, err := devConfig(s.Data, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in, err := open(context.Background(), cfg, newLogger(cfg, &bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	sign := func(typ string, p map[string]any) string {
		signer, err := in.keys.Signer(context.Background(), keys.UseMandate, jose.ES256, typ)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(p)
		obj, _ := signer.Sign(b)
		out, _ := obj.CompactSerialize()
		return out
	}
	tampered := payload()
	tampered["demarches"] = []string{"argent", "justice"}
	tb, _ := json.Marshal(tampered)
	kid := func() string {
		h, _ := base64.RawURLEncoding.DecodeString(parts[0])
		var m map[string]any
		json.Unmarshal(h, &m)
		return m["kid"].(string)
	}()
	noneHeader, _ := json.Marshal(map[string]any{"alg": "none", "typ": "mandate+jwt", "kid": kid})
	hsHeader, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "mandate+jwt", "kid": kid})
	mac := hmac.New(sha256.New, []byte("guess"))
	mac.Write([]byte(b64(hsHeader) + "." + parts[1]))
	expired := payload()
	expired["exp"] = time.Now().Add(-time.Minute).Unix()

	cases := []struct {
		name, jws, page, cli string
	}{
		{"tampered payload", parts[0] + "." + b64(tb) + "." + parts[2], "le mandat a été modifié", "invalid:"},
		{"alg none", b64(noneHeader) + "." + parts[1] + ".", "algorithme de signature n'est pas accepté", "invalid:"},
		{"HS256", b64(hsHeader) + "." + parts[1] + "." + b64(mac.Sum(nil)), "algorithme de signature n'est pas accepté", "invalid:"},
		{"wrong typ", sign("JWT", payload()), "n'est pas un mandat", "invalid:"},
		{"expired", sign("mandate+jwt", expired), "arrivé à échéance", "expired:"},
	}
	for _, tc := range cases {
		_, status, body := postForm(t, browser(t), s.URL+"/mandats/verify", url.Values{"jws": {tc.jws}})
		if status != 200 || !strings.Contains(html.UnescapeString(body), tc.page) || strings.Contains(body, "Ce mandat est valide") {
			t.Errorf("%s: page does not say %q", tc.name, tc.page)
		}
		file := filepath.Join(t.TempDir(), "forged.jwt")
		os.WriteFile(file, []byte(tc.jws), 0o600)
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{"mandate", "verify", file, "--dev", "--data", s.Data}, &out, &errb)
		if err == nil || !strings.HasPrefix(out.String(), tc.cli) {
			t.Errorf("%s: CLI said %q (%v), want %s and a non-zero exit", tc.name, out.String(), err, tc.cli)
		}
	}
}

func TestRenewalThroughThePages(t *testing.T) {
	s := startDev(t, "")
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	old := createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent", "social"))
	page, status, _ := postForm(t, c, s.URL+"/mandats/"+old+"/renouveler", url.Values{"duree": {"1a"}, "methode": {"on_site"}})
	m := draftPath.FindStringSubmatch(page)
	if status != 200 || m == nil {
		t.Fatalf("renew: %d at %s", status, page)
	}
	// Another person cannot accept a renewal.
	_, status, body := pickIdentityAfterPost(t, c, s.URL+"/brouillons/"+m[1]+"/franceconnect", nil, devidp.SubAhmed)
	if status != 400 || !strings.Contains(html.UnescapeString(body), "Un renouvellement doit être accepté par la personne du mandat d'origine") {
		t.Fatalf("renewal by another person: %d", status)
	}
	// The same person can (the draft is still waiting).
	_, status, body = pickIdentityAfterPost(t, c, s.URL+"/brouillons/"+m[1]+"/franceconnect", nil, devidp.SubJosephine)
	if status != 200 || !strings.Contains(body, "Récapitulatif du mandat") {
		t.Fatalf("renewal recap: %d", status)
	}
	page, _, body = postForm(t, c, s.URL+"/brouillons/"+m[1]+"/signer", url.Values{"accord_personne": {"oui"}, "confirmation_aidant": {"oui"}})
	if !strings.Contains(body, "Attestation de mandat") {
		t.Fatalf("renewed mandate: %s", page)
	}
	if _, _, body := get(t, c, s.URL+"/mandats/"+old); !strings.Contains(body, "Retiré") || !strings.Contains(body, "Remplacée par un nouveau mandat") {
		t.Fatal("the renewed mandate is not shown as replaced")
	}
	db := openDB(t, s)
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'mandate.renewed'`); n != 1 {
		t.Fatalf("%d mandate.renewed events", n)
	}
}
