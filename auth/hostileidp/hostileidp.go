// Package hostileidp turns the development providers of package devidp
// into hostile ones, for tests of the relying party: each Attack makes a
// provider forge one thing on purpose, through devidp's tweaks, and says
// how the relying party must answer. Attacks holds cases of each of the
// thirteen families of issue 12, so that a test of a callback walks them
// all; Families lists the families, for a test to check it covered each.
//
// The providers stay real: discovery, authorization, token and userinfo
// endpoints over HTTP, as the relying party meets them in production. Only
// what an attack forges changes.
//
// It is for tests only: nothing in the service imports it.
package hostileidp

import (
	"net/url"
	"strings"

	"aidants/devidp"
)

// Family is a family of attacks a relying party must refuse.
type Family string

// The thirteen families.
const (
	Nonce          Family = "a wrong or missing nonce"
	AlgNone        Family = "alg none"
	HS256PublicKey Family = "HS256 keyed with the provider's public key"
	WrongKey       Family = "the right kid with a wrong key"
	Issuer         Family = "an iss mismatch"
	Audience       Family = "a wrong or extra aud, a wrong azp"
	Times          Family = "exp past or iat in the future"
	Subject        Family = "sub missing, or a userinfo sub that differs"
	MixUp          Family = "a mix-up between the providers"
	PKCE           Family = "code injection against PKCE"
	ACR            Family = "an acr lower than asked"
	Metadata       Family = "a discovery document for another issuer, or a key set with a bad key"
	Shape          Family = "a million-dot token or a compressed JWE"
)

// Families are the thirteen, in the order of the issue.
var Families = []Family{Nonce, AlgNone, HS256PublicKey, WrongKey, Issuer, Audience, Times, Subject, MixUp, PKCE, ACR, Metadata, Shape}

// AskedACR is the acr_values the relying party must ask of both providers,
// and the acr they answer when honest (devidp.Options.ACR): the ACR attacks
// answer less.
const AskedACR = "eidas2"

// Outcome is how the relying party must answer an attack.
type Outcome int

// The outcomes.
const (
	// Refused: the answer does not verify (auth.ErrBadToken), the
	// callback shows "La connexion n'a pas pu être vérifiée".
	Refused Outcome = iota
	// NotThisSignIn: the callback answers no sign-in this browser started
	// at this provider (auth.ErrBadCallback), "Cette connexion n'est plus
	// valable".
	NotThisSignIn
	// Unavailable: the provider's metadata cannot be trusted, so the
	// sign-in does not even start (auth.ErrProviderUnavailable, 503).
	Unavailable
)

func (o Outcome) String() string {
	switch o {
	case Refused:
		return "refused"
	case NotThisSignIn:
		return "not this sign-in"
	case Unavailable:
		return "unavailable"
	}
	return "?"
}

// Arena is where an attack plays: the provider whose callback is
// attacked, the other provider of the same relying party, and what the
// test harness does for the attack.
type Arena struct {
	Target, Other *devidp.Provider
	// Client and OtherClient are the relying party's client ids at Target
	// and Other.
	Client, OtherClient string
	// Answer runs an honest sign-in at p (Target or Other) in the victim's
	// browser — the browser whose callback is attacked — and returns the
	// URL of the relying party's callback the provider sent it to, not
	// opened.
	Answer func(p *devidp.Provider) string
	// AttackerAnswer does the same in another browser, the attacker's.
	AttackerAnswer func(p *devidp.Provider) string
	// Callback is the relying party's callback URL for p, without query.
	Callback func(p *devidp.Provider) string
}

// Attack is one forgery and how the relying party must answer it.
type Attack struct {
	Family Family
	Name   string
	Want   Outcome
	// Arm makes the providers misbehave; Reset undoes it.
	Arm func(a *Arena)
	// Callback, when set, is the URL the victim's browser opens instead of
	// the one Answer(Target) returns (a mix-up, an injected code).
	Callback func(a *Arena) string
	// AtDiscovery: Target misbehaves from its discovery document on; the
	// relying party must not have discovered it yet, and refuses to start
	// the sign-in.
	AtDiscovery bool
	// NoTokenRequest: the relying party must refuse before it redeems the
	// code, so that no token endpoint ever sees it.
	NoTokenRequest bool
}

// Reset makes both providers well-behaved again.
func Reset(a *Arena) {
	a.Target.SetTweaks(devidp.Tweaks{})
	a.Other.SetTweaks(devidp.Tweaks{})
}

// idToken arms a tweak of Target's ID token.
func idToken(f func(a *Arena, tw *devidp.TokenTweak)) func(*Arena) {
	return func(a *Arena) {
		a.Target.SetTweaks(devidp.Tweaks{IDToken: func(tw *devidp.TokenTweak) { f(a, tw) }})
	}
}

// claims arms a change of the ID token's claims, signed honestly.
func claims(f func(a *Arena, c map[string]any)) func(*Arena) {
	return idToken(func(a *Arena, tw *devidp.TokenTweak) { f(a, tw.Claims) })
}

// userinfo arms a tweak of Target's userinfo answer.
func userinfo(f func(a *Arena, tw *devidp.TokenTweak)) func(*Arena) {
	return func(a *Arena) {
		a.Target.SetTweaks(devidp.Tweaks{Userinfo: func(tw *devidp.TokenTweak) { f(a, tw) }})
	}
}

// signedUserinfo is Target's userinfo as a JWT for the relying party.
func signedUserinfo(a *Arena, tw *devidp.TokenTweak) map[string]any {
	tw.Claims["iss"], tw.Claims["aud"] = a.Target.Issuer(), a.Client
	return tw.Claims
}

// withCode returns the callback URL u with the code of v.
func withCode(u, v string) string {
	pu, err1 := url.Parse(u)
	pv, err2 := url.Parse(v)
	if err1 != nil || err2 != nil {
		return u
	}
	q := pu.Query()
	q.Set("code", pv.Query().Get("code"))
	pu.RawQuery = q.Encode()
	return pu.String()
}

// injectedCode is the victim's callback (their state, their browser)
// carrying a code the attacker obtained in their own sign-in, with their
// own PKCE verifier.
func injectedCode(a *Arena) string {
	victim := a.Answer(a.Target)
	return withCode(victim, a.AttackerAnswer(a.Target))
}

// Attacks returns every attack, the thirteen families' cases.
func Attacks() []Attack {
	return []Attack{
		{Family: Nonce, Name: "nonce of another request", Arm: claims(func(_ *Arena, c map[string]any) { c["nonce"] = "nonce-d-une-autre-demande" })},
		{Family: Nonce, Name: "no nonce", Arm: claims(func(_ *Arena, c map[string]any) { delete(c, "nonce") })},

		{Family: AlgNone, Name: "alg none", Arm: idToken(func(_ *Arena, tw *devidp.TokenTweak) { tw.Alg = "none" })},
		{Family: AlgNone, Name: "alg none under the provider's kid", Arm: idToken(func(a *Arena, tw *devidp.TokenTweak) {
			tw.Raw = unsigned("none", a.Target.PublicKey().KeyID, tw.Claims)
		})},
		{Family: AlgNone, Name: "alg None, capitalised", Arm: idToken(func(_ *Arena, tw *devidp.TokenTweak) { tw.Raw = unsigned("None", "", tw.Claims) })},

		{Family: HS256PublicKey, Name: "HS256 keyed with the public key (PEM)", Arm: idToken(func(a *Arena, tw *devidp.TokenTweak) {
			tw.Raw = hmacSigned(publicPEM(a.Target), a.Target.PublicKey().KeyID, tw.Claims)
		})},
		{Family: HS256PublicKey, Name: "HS256 keyed with the public key (JWK)", Arm: idToken(func(a *Arena, tw *devidp.TokenTweak) {
			tw.Raw = hmacSigned(publicJWK(a.Target), a.Target.PublicKey().KeyID, tw.Claims)
		})},
		{Family: HS256PublicKey, Name: "HS256 keyed with the client secret", Arm: idToken(func(_ *Arena, tw *devidp.TokenTweak) { tw.Alg = "HS256" })},

		{Family: WrongKey, Name: "the provider's kid, another key", Arm: idToken(func(a *Arena, tw *devidp.TokenTweak) {
			tw.Raw = es256(newKey(), a.Target.PublicKey().KeyID, tw.Claims)
		})},
		{Family: WrongKey, Name: "no kid, another key", Arm: idToken(func(_ *Arena, tw *devidp.TokenTweak) { tw.Raw = es256(newKey(), "", tw.Claims) })},
		{Family: WrongKey, Name: "signed userinfo, the provider's kid, another key", Arm: userinfo(func(a *Arena, tw *devidp.TokenTweak) {
			tw.Raw = es256(newKey(), a.Target.PublicKey().KeyID, signedUserinfo(a, tw))
		})},

		{Family: Issuer, Name: "iss of the other provider", Arm: claims(func(a *Arena, c map[string]any) { c["iss"] = a.Other.Issuer() })},
		{Family: Issuer, Name: "iss with a trailing slash", Arm: claims(func(a *Arena, c map[string]any) { c["iss"] = a.Target.Issuer() + "/" })},
		{Family: Issuer, Name: "no iss", Arm: claims(func(_ *Arena, c map[string]any) { delete(c, "iss") })},
		{Family: Issuer, Name: "signed userinfo of another issuer", Arm: userinfo(func(a *Arena, tw *devidp.TokenTweak) {
			signedUserinfo(a, tw)["iss"] = a.Other.Issuer()
			tw.Alg = "ES256"
		})},

		{Family: Audience, Name: "aud of the other client", Arm: claims(func(a *Arena, c map[string]any) { c["aud"] = a.OtherClient })},
		{Family: Audience, Name: "an extra aud", Arm: claims(func(a *Arena, c map[string]any) { c["aud"] = []string{a.Client, "un-autre-service"} })},
		{Family: Audience, Name: "an extra aud with azp right", Arm: claims(func(a *Arena, c map[string]any) {
			c["aud"], c["azp"] = []string{a.Client, a.OtherClient}, a.Client
		})},
		{Family: Audience, Name: "azp of the other client", Arm: claims(func(a *Arena, c map[string]any) { c["azp"] = a.OtherClient })},
		{Family: Audience, Name: "no aud", Arm: claims(func(_ *Arena, c map[string]any) { delete(c, "aud") })},
		{Family: Audience, Name: "signed userinfo for the other client", Arm: userinfo(func(a *Arena, tw *devidp.TokenTweak) {
			signedUserinfo(a, tw)["aud"] = a.OtherClient
			tw.Alg = "ES256"
		})},

		{Family: Times, Name: "exp an hour ago", Arm: claims(func(_ *Arena, c map[string]any) {
			c["iat"], c["exp"] = num(c["iat"])-7200, num(c["iat"])-3600
		})},
		{Family: Times, Name: "no exp", Arm: claims(func(_ *Arena, c map[string]any) { delete(c, "exp") })},
		{Family: Times, Name: "iat in an hour", Arm: claims(func(_ *Arena, c map[string]any) {
			c["iat"], c["exp"] = num(c["iat"])+3600, num(c["iat"])+7200
		})},
		// Beyond the service's leeway, within go-oidc's five minutes for nbf.
		{Family: Times, Name: "iat two minutes ahead", Arm: claims(func(_ *Arena, c map[string]any) { c["iat"] = num(c["iat"]) + 120 })},
		{Family: Times, Name: "nbf two minutes ahead", Arm: claims(func(_ *Arena, c map[string]any) { c["nbf"] = num(c["iat"]) + 120 })},
		{Family: Times, Name: "no iat", Arm: claims(func(_ *Arena, c map[string]any) { delete(c, "iat") })},

		{Family: Subject, Name: "no sub", Arm: claims(func(_ *Arena, c map[string]any) { delete(c, "sub") })},
		{Family: Subject, Name: "an empty sub", Arm: claims(func(_ *Arena, c map[string]any) { c["sub"] = "" })},
		{Family: Subject, Name: "userinfo of another person", Arm: userinfo(func(_ *Arena, tw *devidp.TokenTweak) { tw.Claims["sub"] = "quelqu-un-d-autre" })},
		{Family: Subject, Name: "userinfo without sub", Arm: userinfo(func(_ *Arena, tw *devidp.TokenTweak) { delete(tw.Claims, "sub") })},
		{Family: Subject, Name: "signed userinfo of another person", Arm: userinfo(func(a *Arena, tw *devidp.TokenTweak) {
			signedUserinfo(a, tw)["sub"] = "quelqu-un-d-autre"
			tw.Alg = "ES256"
		})},

		{Family: MixUp, Name: "the other provider's answer at this callback", Want: NotThisSignIn, NoTokenRequest: true,
			Callback: func(a *Arena) string {
				other := a.Answer(a.Other)
				_, query, _ := strings.Cut(other, "?")
				return a.Callback(a.Target) + "?" + query
			}},
		{Family: MixUp, Name: "the authorization response names the other issuer (RFC 9207)", NoTokenRequest: true,
			Arm: func(a *Arena) {
				a.Target.SetTweaks(devidp.Tweaks{Response: func(q url.Values) { q.Set("iss", a.Other.Issuer()) }})
			}},
		{Family: MixUp, Name: "no iss in the response of a provider that promises it (RFC 9207)", NoTokenRequest: true,
			Arm: func(a *Arena) {
				a.Target.SetTweaks(devidp.Tweaks{Response: func(q url.Values) { q.Del("iss") }})
			}},
		{Family: MixUp, Name: "an ID token the other provider signed", Arm: idToken(func(a *Arena, tw *devidp.TokenTweak) {
			tw.Claims["iss"] = a.Other.Issuer()
			raw, err := a.Other.SignJWT(tw.Claims)
			if err != nil {
				raw = "signature-impossible"
			}
			tw.Raw = raw
		})},

		{Family: PKCE, Name: "a code obtained with another verifier", Callback: injectedCode},
		{Family: PKCE, Name: "a code obtained with another verifier, at a provider that ignores PKCE", Callback: injectedCode,
			Arm: func(a *Arena) { a.Target.SetTweaks(devidp.Tweaks{IgnorePKCE: true}) }},

		{Family: ACR, Name: "acr eidas1 for eidas2 asked", Arm: claims(func(_ *Arena, c map[string]any) { c["acr"] = "eidas1" })},
		{Family: ACR, Name: "no acr", Arm: claims(func(_ *Arena, c map[string]any) { delete(c, "acr") })},

		{Family: Metadata, Name: "discovery document of the other issuer", Want: Unavailable, AtDiscovery: true,
			Arm: func(a *Arena) {
				a.Target.SetTweaks(devidp.Tweaks{Discovery: func(doc map[string]any) { doc["issuer"] = a.Other.Issuer() }})
			}},
		{Family: Metadata, Name: "discovery document whose issuer has a trailing slash", Want: Unavailable, AtDiscovery: true,
			Arm: func(a *Arena) {
				a.Target.SetTweaks(devidp.Tweaks{Discovery: func(doc map[string]any) { doc["issuer"] = a.Target.Issuer() + "/" }})
			}},
		{Family: Metadata, Name: "key set: a new kid bound to another key", Arm: rotated("rotated-other-key", func(kid string) map[string]any {
			return ecJWK(&newKey().PublicKey, kid)
		})},
		{Family: Metadata, Name: "key set: a new kid bound to a point off its curve", Arm: rotated("rotated-off-curve", func(kid string) map[string]any {
			return offCurveJWK(kid)
		})},
		{Family: Metadata, Name: "key set: a new kid bound to a symmetric key, the token HS256", Arm: func(a *Arena) {
			secret := []byte("secret-publie-dans-le-jeu-de-cles")
			a.Target.SetTweaks(devidp.Tweaks{
				IDToken: func(tw *devidp.TokenTweak) { tw.Raw = hmacSigned(secret, "rotated-oct", tw.Claims) },
				JWKS:    func(set []byte) []byte { return withKeys(set, octJWK(secret, "rotated-oct")) },
			})
		}},

		{Family: Shape, Name: "a million dots", Arm: idToken(func(_ *Arena, tw *devidp.TokenTweak) { tw.Raw = millionDots })},
		{Family: Shape, Name: "a compressed JWE", Arm: idToken(func(_ *Arena, tw *devidp.TokenTweak) { tw.Raw = compressedJWE(tw.Claims) })},
		{Family: Shape, Name: "a genuine signature in the JSON serialisation", Arm: idToken(func(a *Arena, tw *devidp.TokenTweak) {
			raw, err := a.Target.SignJWT(tw.Claims)
			if err != nil {
				raw = "signature-impossible"
			}
			tw.Raw = jsonSerialised(raw)
		})},
		{Family: Shape, Name: "signed userinfo of a million dots", Arm: userinfo(func(_ *Arena, tw *devidp.TokenTweak) { tw.Raw = millionDots })},
		{Family: Shape, Name: "signed userinfo as a compressed JWE", Arm: userinfo(func(a *Arena, tw *devidp.TokenTweak) {
			tw.Raw = compressedJWE(signedUserinfo(a, tw))
		})},
	}
}

// rotated arms a key rotation gone wrong: the ID token is signed with a
// new key under a new kid — so that the relying party fetches the key set
// again, whatever it kept — and the key set publishes, under that kid,
// the key bad returns instead of the new key.
func rotated(kid string, bad func(kid string) map[string]any) func(*Arena) {
	return func(a *Arena) {
		signing := newKey()
		a.Target.SetTweaks(devidp.Tweaks{
			IDToken: func(tw *devidp.TokenTweak) { tw.Raw = es256(signing, kid, tw.Claims) },
			JWKS:    func(set []byte) []byte { return withKeys(set, bad(kid)) },
		})
	}
}
