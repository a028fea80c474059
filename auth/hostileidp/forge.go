package hostileidp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"aidants/devidp"
)

// The forgeries: tokens no honest provider signs. Each takes the claims
// the provider was about to sign, so that everything but the forged part
// is right.

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("hostileidp: encode %T: %v", v, err)) // maps of plain values only
	}
	return b64(b)
}

// unsigned is "header.payload." with alg none, naming kid when set.
func unsigned(alg, kid string, claims map[string]any) string {
	h := map[string]any{"alg": alg, "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	return b64JSON(h) + "." + b64JSON(claims) + "."
}

// hmacSigned is an HS256 token keyed with key, naming kid when set.
func hmacSigned(key []byte, kid string, claims map[string]any) string {
	h := map[string]any{"alg": "HS256", "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	input := b64JSON(h) + "." + b64JSON(claims)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + b64(mac.Sum(nil))
}

// publicPEM is the provider's public key as PEM (SubjectPublicKeyInfo):
// what a library that takes "the key" as bytes would use as an HMAC
// secret.
func publicPEM(p *devidp.Provider) []byte {
	der, err := x509.MarshalPKIXPublicKey(p.PublicKey().Key)
	if err != nil {
		panic(fmt.Sprintf("hostileidp: public key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// publicJWK is the provider's public key as its key set publishes it.
func publicJWK(p *devidp.Provider) []byte {
	k := p.PublicKey()
	b, err := k.MarshalJSON()
	if err != nil {
		panic(fmt.Sprintf("hostileidp: public key: %v", err))
	}
	return b
}

// newKey is a fresh P-256 key: not the provider's.
func newKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("hostileidp: generate key: %v", err))
	}
	return k
}

// es256 signs claims with key, naming kid when set.
func es256(key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	sk := jose.SigningKey{Algorithm: jose.ES256, Key: key}
	if kid != "" {
		sk.Key = jose.JSONWebKey{Key: key, KeyID: kid}
	}
	signer, err := jose.NewSigner(sk, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		panic(fmt.Sprintf("hostileidp: signer: %v", err))
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		panic(fmt.Sprintf("hostileidp: sign: %v", err))
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		panic(fmt.Sprintf("hostileidp: serialise: %v", err))
	}
	return out
}

// jsonSerialised is a genuine compact JWS rewritten in the flattened JSON
// serialisation, which go-jose's ParseSigned also accepts.
func jsonSerialised(compact string) string {
	parts := strings.Split(compact, ".")
	b, _ := json.Marshal(map[string]string{"protected": parts[0], "payload": parts[1], "signature": parts[2]})
	return string(b)
}

// millionDots is a token of a million dots: whoever splits it before
// bounding it allocates a million strings.
var millionDots = strings.Repeat(".", 1_000_000)

// compressedJWE is a JWE whose plaintext, the claims padded with 4 MiB of
// zeros, is DEFLATE-compressed (a decompression bomb), encrypted to a key
// the relying party does not have. An ID token is a JWS; a JWE must be
// refused without being opened.
func compressedJWE(claims map[string]any) string {
	padded := map[string]any{}
	for k, v := range claims {
		padded[k] = v
	}
	padded["padding"] = strings.Repeat("0", 4<<20)
	key := make([]byte, 16)
	rand.Read(key)
	enc, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.DIRECT, Key: key},
		(&jose.EncrypterOptions{Compression: jose.DEFLATE}).WithType("JWT"))
	if err != nil {
		panic(fmt.Sprintf("hostileidp: encrypter: %v", err))
	}
	payload, _ := json.Marshal(padded)
	obj, err := enc.Encrypt(payload)
	if err != nil {
		panic(fmt.Sprintf("hostileidp: encrypt: %v", err))
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		panic(fmt.Sprintf("hostileidp: serialise: %v", err))
	}
	return out
}

// withKeys returns the key set set (JSON) with extra keys added.
func withKeys(set []byte, extra ...map[string]any) []byte {
	var s struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(set, &s); err != nil {
		panic(fmt.Sprintf("hostileidp: key set: %v", err))
	}
	for _, k := range extra {
		b, _ := json.Marshal(k)
		s.Keys = append(s.Keys, b)
	}
	b, _ := json.Marshal(s)
	return b
}

// ecJWK is a P-256 public key as a JWK, under kid.
func ecJWK(pub *ecdsa.PublicKey, kid string) map[string]any {
	k := jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}
	b, err := k.MarshalJSON()
	if err != nil {
		panic(fmt.Sprintf("hostileidp: jwk: %v", err))
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// offCurveJWK is a P-256 "public key" whose point is not on the curve:
// the x of a real key with a y that does not go with it (an invalid-curve
// attack, against libraries that do not check).
func offCurveJWK(kid string) map[string]any {
	m := ecJWK(&newKey().PublicKey, kid)
	y, _ := base64.RawURLEncoding.DecodeString(m["y"].(string))
	y[len(y)-1] ^= 1
	m["y"] = b64(y)
	return m
}

// octJWK is a symmetric key published in a key set: a relying party that
// took it would accept HS256 tokens made with it by anyone who read the set.
func octJWK(secret []byte, kid string) map[string]any {
	return map[string]any{"kty": "oct", "kid": kid, "alg": "HS256", "use": "sig", "k": b64(secret)}
}

// num reads a numeric claim as the provider set it (int64) or as JSON
// decodes it (float64).
func num(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}
