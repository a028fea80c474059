package mandate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/keys"
	"aidants/mandate"
	"aidants/store"
	"aidants/store/storetest"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// payloadOf returns a signed mandate's payload as a map.
func payloadOf(t *testing.T, jws string) map[string]any {
	t.Helper()
	parts := strings.Split(jws, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	json.Unmarshal(raw, &m)
	return m
}

// signWith signs payload with the instance's mandate key but the given typ.
func signWith(t *testing.T, km *keys.Manager, typ string, payload map[string]any) string {
	t.Helper()
	signer, err := km.Signer(context.Background(), keys.UseMandate, jose.ES256, typ)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(payload)
	obj, _ := signer.Sign(b)
	s, _ := obj.CompactSerialize()
	return s
}

func TestVerifyRejectsForgedMandates(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	e := newEnv(t, db)
	m := e.onSite(e.a, "fc-josephine", "argent")
	km, err := keys.Open(context.Background(), e.log, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(m.JWS, ".")
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h map[string]any
	json.Unmarshal(header, &h)

	tampered := payloadOf(t, m.JWS)
	tampered["demarches"] = []string{"argent", "justice"}
	tb, _ := json.Marshal(tampered)

	none, _ := json.Marshal(map[string]any{"alg": "none", "typ": "mandate+jwt", "kid": h["kid"]})
	hs, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "mandate+jwt", "kid": h["kid"]})
	mac := hmac.New(sha256.New, []byte("public-key-as-secret"))
	mac.Write([]byte(b64(hs) + "." + parts[1]))

	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ss, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: stranger, KeyID: "not-ours"}},
		(&jose.SignerOptions{}).WithType("mandate+jwt"))
	strangerSigned, _ := ss.Sign([]byte(`{"jti":"` + m.ID + `"}`))
	strangerJWS, _ := strangerSigned.CompactSerialize()

	otherIssuer := payloadOf(t, m.JWS)
	otherIssuer["iss"] = "https://evil.example"
	expired := payloadOf(t, m.JWS)
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	unknown := payloadOf(t, m.JWS)
	unknown["jti"] = "man_unknown"

	cases := []struct {
		name, jws, status, reason string
	}{
		{"tampered payload", parts[0] + "." + b64(tb) + "." + parts[2], mandate.VerifyInvalid, "modifié"},
		{"alg none", b64(none) + "." + parts[1] + ".", mandate.VerifyInvalid, "algorithme"},
		{"HS256", b64(hs) + "." + parts[1] + "." + b64(mac.Sum(nil)), mandate.VerifyInvalid, "algorithme"},
		{"wrong typ", signWith(t, km, "JWT", payloadOf(t, m.JWS)), mandate.VerifyInvalid, "n'est pas un mandat"},
		{"key not ours", strangerJWS, mandate.VerifyInvalid, "clé"},
		{"other issuer", signWith(t, km, mandate.MandateType, otherIssuer), mandate.VerifyInvalid, "autre service"},
		{"expired", signWith(t, km, mandate.MandateType, expired), mandate.VerifyExpired, "échéance"},
		{"unknown number", signWith(t, km, mandate.MandateType, unknown), mandate.VerifyUnknown, "pas de mandat"},
		{"garbage", "not a jws", mandate.VerifyInvalid, "pas un mandat"},
	}
	for _, c := range cases {
		res, err := e.svc.Verify(context.Background(), c.jws)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if res.Status != c.status || !strings.Contains(res.Reason, c.reason) {
			t.Errorf("%s: %s (%s), want %s with %q", c.name, res.Status, res.Reason, c.status, c.reason)
		}
	}
	if res, _ := e.svc.Verify(context.Background(), m.JWS); res.Status != mandate.VerifyValid {
		t.Fatalf("the genuine mandate: %+v", res)
	}
}
