package hostileidp

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"aidants/devidp"
)

// The forgeries must be what they claim: a relying party that refused a
// forged token only because the forgery was botched would prove nothing.
// Each is checked here with a verifier that lets it through on purpose.

func testProvider(t *testing.T) *devidp.Provider {
	t.Helper()
	p, err := devidp.New(devidp.Options{Issuer: "http://127.0.0.1:1/idp", Kind: devidp.KindAidants,
		Identities: devidp.AidantIdentities("98765432100015"),
		Clients:    []devidp.Client{{ID: "c", Secret: "s", RedirectURIs: []string{"http://127.0.0.1:1/cb"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var testClaims = map[string]any{"iss": "http://127.0.0.1:1/idp", "sub": "x", "aud": "c"}

func header(t *testing.T, token string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHMACWithThePublicKeyVerifiesWithThatKey(t *testing.T) {
	p := testProvider(t)
	for name, key := range map[string][]byte{"PEM": publicPEM(p), "JWK": publicJWK(p)} {
		tok := hmacSigned(key, p.PublicKey().KeyID, testClaims)
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.HS256})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify(key); err != nil {
			t.Errorf("%s: an HS256 verifier keyed with the public key refuses it: %v", name, err)
		}
		if h := header(t, tok); h["kid"] != p.PublicKey().KeyID {
			t.Errorf("%s: header %v", name, h)
		}
	}
	if !strings.HasPrefix(string(publicPEM(p)), "-----BEGIN PUBLIC KEY-----") {
		t.Errorf("PEM = %s", publicPEM(p))
	}
}

func TestAnotherKeyUnderTheProvidersKid(t *testing.T) {
	p := testProvider(t)
	k := newKey()
	tok := es256(k, p.PublicKey().KeyID, testClaims)
	jws, _ := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if _, err := jws.Verify(&k.PublicKey); err != nil {
		t.Errorf("the attacker's key does not verify its token: %v", err)
	}
	if _, err := jws.Verify(p.PublicKey().Key); err == nil {
		t.Error("the provider's key verifies the forgery")
	}
	if h := header(t, tok); h["kid"] != p.PublicKey().KeyID || h["alg"] != "ES256" {
		t.Errorf("header %v", h)
	}
}

func TestJSONSerialisationOfAGenuineSignatureVerifies(t *testing.T) {
	p := testProvider(t)
	raw, err := p.SignJWT(testClaims)
	if err != nil {
		t.Fatal(err)
	}
	forged := jsonSerialised(raw)
	jws, err := jose.ParseSigned(forged, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(p.PublicKey().Key); err != nil {
		t.Errorf("go-jose's ParseSigned does not take it: %v (the attack would be moot)", err)
	}
}

func TestCompressedJWEIsAFivePartDeflatedJWE(t *testing.T) {
	tok := compressedJWE(testClaims)
	if n := strings.Count(tok, "."); n != 4 {
		t.Fatalf("%d dots, want a compact JWE", n)
	}
	h := header(t, tok)
	if h["zip"] != "DEF" || h["enc"] != "A128GCM" {
		t.Errorf("header %v", h)
	}
	if len(tok) > 64<<10 {
		t.Errorf("%d bytes: the bomb should be small on the wire", len(tok))
	}
}

func TestUnsignedAndBadKeys(t *testing.T) {
	tok := unsigned("none", "kid-1", testClaims)
	if h := header(t, tok); h["alg"] != "none" || h["kid"] != "kid-1" || !strings.HasSuffix(tok, ".") {
		t.Errorf("unsigned = %s (%v)", tok, h)
	}
	b, _ := json.Marshal(offCurveJWK("k"))
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err == nil || !strings.Contains(err.Error(), "not on declared curve") {
		t.Errorf("off-curve key: %v", err)
	}
	if len(millionDots) != 1_000_000 || strings.Trim(millionDots, ".") != "" {
		t.Error("not a million dots")
	}
}

func TestEveryFamilyHasAnAttack(t *testing.T) {
	seen := map[Family]int{}
	names := map[string]bool{}
	for _, a := range Attacks() {
		seen[a.Family]++
		if names[a.Name] {
			t.Errorf("two attacks named %q", a.Name)
		}
		names[a.Name] = true
		if a.Arm == nil && a.Callback == nil {
			t.Errorf("%s: does nothing", a.Name)
		}
	}
	if len(Families) != 13 {
		t.Errorf("%d families", len(Families))
	}
	for _, f := range Families {
		if seen[f] == 0 {
			t.Errorf("no attack of %q", f)
		}
	}
	if len(seen) != len(Families) {
		t.Errorf("attacks of %d families, %d listed", len(seen), len(Families))
	}
}
