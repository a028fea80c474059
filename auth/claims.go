package auth

import (
	"crypto/subtle"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"aidants/internal/jwtverify"
)

// ClaimsError is an answer whose claims do not meet what this instance
// requires. It names the claims that were missing and the values that
// decided — amr, acr, aud, azp, iat, nbf: never a person's data, never a
// token — so that the operator can see why, in the log, without reading
// anyone's identity. It unwraps to ErrMFARequired for a missing second
// factor at the aidants' provider, to ErrBadToken otherwise.
type ClaimsError struct {
	Provider Provider
	// Reason is the requirement the answer fails: claims_missing,
	// mfa_required, acr_not_met, nonce, audience, azp, issued_in_future,
	// not_yet_valid, userinfo_subject.
	Reason string
	// Missing names the required claims the answer lacks.
	Missing []string
	// Got holds, by claim name, the values that arrived and decided.
	Got map[string]any
	// Want says what was required (`acr_values "eidas2"`).
	Want string

	kind error
}

func (e *ClaimsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "auth: %s answer refused (%s)", e.Provider, e.Reason)
	if len(e.Missing) > 0 {
		fmt.Fprintf(&b, ": missing %s", strings.Join(e.Missing, ", "))
	}
	for i, k := range e.gotNames() {
		sep := ", "
		if i == 0 {
			sep = ": got "
		}
		fmt.Fprintf(&b, "%s%s=%s", sep, k, formatValue(e.Got[k]))
	}
	if e.Want != "" {
		fmt.Fprintf(&b, "; want %s", e.Want)
	}
	return b.String()
}

func (e *ClaimsError) Unwrap() error { return e.kind }

func (e *ClaimsError) gotNames() []string {
	names := make([]string, 0, len(e.Got))
	for k := range e.Got {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// logAttrs are the error's fields for slog.
func (e *ClaimsError) logAttrs() []any {
	attrs := []any{"provider", string(e.Provider), "reason", e.Reason}
	if len(e.Missing) > 0 {
		attrs = append(attrs, "missing", e.Missing)
	}
	for _, k := range e.gotNames() {
		v := e.Got[k]
		if s, ok := v.(string); ok {
			attrs = append(attrs, k, bounded(s)) // slog quotes it when needed
		} else {
			attrs = append(attrs, k, formatValue(v))
		}
	}
	if e.Want != "" {
		attrs = append(attrs, "want", e.Want)
	}
	return attrs
}

// formatValue writes a claim's value for the log, bounded: a hostile
// provider chooses what it sends.
func formatValue(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(bounded(v))
	case []string:
		if len(v) > 8 {
			v = append(slices.Clone(v[:8]), "…")
		}
		items := make([]string, len(v))
		for i, s := range v {
			items[i] = bounded(s)
		}
		return "[" + strings.Join(items, " ") + "]"
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	}
	return bounded(fmt.Sprint(v))
}

func bounded(s string) string {
	if r := []rune(s); len(r) > 64 {
		return string(r[:64]) + "…"
	}
	return s
}

// refuse is a ClaimsError of this provider, a refusal of the answer.
func (p *rp) refuse(reason string, missing []string, got map[string]any, want string) *ClaimsError {
	return &ClaimsError{Provider: p.name, Reason: reason, Missing: missing, Got: got, Want: want, kind: ErrBadToken}
}

// checkIDToken checks what go-oidc leaves to the relying party (Core
// §3.1.3.7): the nonce of this request, a subject, an issue time that is
// not in the future, nbf within the service's leeway (go-oidc allows five
// minutes), this client as the only audience — an audience the service
// does not know is not trusted — and azp, when present, naming this
// client.
func (p *rp) checkIDToken(idt *oidc.IDToken, claims map[string]any, nonce string) error {
	now := p.now()
	switch {
	case idt.Nonce == "":
		return p.refuse("nonce", []string{"nonce"}, nil, "")
	case subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1:
		return p.refuse("nonce", nil, nil, "the nonce of this request")
	case idt.Subject == "":
		return p.refuse("claims_missing", []string{"sub"}, nil, "")
	case idt.IssuedAt.IsZero():
		return p.refuse("claims_missing", []string{"iat"}, nil, "")
	case idt.IssuedAt.After(now.Add(jwtverify.Leeway)):
		return p.refuse("issued_in_future", nil, map[string]any{"iat": idt.IssuedAt}, "iat before now")
	case len(idt.Audience) != 1:
		return p.refuse("audience", nil, map[string]any{"aud": idt.Audience}, strconv.Quote(p.cfg.ClientID)+" alone")
	}
	if nbf, ok := claims["nbf"].(float64); ok && time.Unix(int64(nbf), 0).After(now.Add(jwtverify.Leeway)) {
		return p.refuse("not_yet_valid", nil, map[string]any{"nbf": time.Unix(int64(nbf), 0)}, "nbf before now")
	}
	if azp, present := claims["azp"]; present && azp != p.cfg.ClientID {
		return p.refuse("azp", nil, map[string]any{"azp": azp}, strconv.Quote(p.cfg.ClientID))
	}
	return nil
}

// checkACR refuses an answer whose acr does not meet acr_values, or that
// has none when one was asked.
func (p *rp) checkACR(claims map[string]any) error {
	if strings.TrimSpace(p.cfg.ACRValues) == "" {
		return nil
	}
	acr, _ := claims["acr"].(string)
	if acr == "" {
		return p.refuse("acr_not_met", []string{"acr"}, nil, "acr_values "+strconv.Quote(p.cfg.ACRValues))
	}
	if !acrMeets(acr, p.cfg.ACRValues) {
		return p.refuse("acr_not_met", nil, map[string]any{"acr": acr}, "acr_values "+strconv.Quote(p.cfg.ACRValues))
	}
	return nil
}

// acrMeets tells whether acr meets acrValues (space-separated): it is one
// of them, or an eIDAS level at least as high as the lowest eIDAS level
// asked (eidas1 < eidas2 < eidas3, FranceConnect's levels).
func acrMeets(acr, acrValues string) bool {
	asked := strings.Fields(acrValues)
	if slices.Contains(asked, acr) {
		return true
	}
	got := eidasLevel(acr)
	if got == 0 {
		return false
	}
	for _, a := range asked {
		if l := eidasLevel(a); l != 0 && l <= got {
			return true
		}
	}
	return false
}

// eidasLevel is 1, 2 or 3 for eidas1, eidas2, eidas3, and 0 for anything
// else.
func eidasLevel(acr string) int {
	switch acr {
	case "eidas1":
		return 1
	case "eidas2":
		return 2
	case "eidas3":
		return 3
	}
	return 0
}

// amrValues returns the amr claim's values (an array of strings; a lone
// string is taken as one value).
func amrValues(claims map[string]any) []string {
	var out []string
	switch amr := claims["amr"].(type) {
	case string:
		out = append(out, amr)
	case []any:
		for _, v := range amr {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// hasMFA tells whether the authentication used a second factor: an amr
// value of MFAAMRs, or an acr of MFAACRs.
func (p *rp) hasMFA(claims map[string]any) bool {
	for _, v := range amrValues(claims) {
		if slices.Contains(p.cfg.MFAAMRs, v) {
			return true
		}
	}
	acr, _ := claims["acr"].(string)
	return acr != "" && slices.Contains(p.cfg.MFAACRs, acr)
}

// mfaRefusal explains an answer without the required second factor: the
// amr and acr that arrived (or that they were missing), and what would
// have done.
func (p *rp) mfaRefusal(claims map[string]any, kind error) *ClaimsError {
	e := &ClaimsError{Provider: p.name, Reason: "mfa_required", Got: map[string]any{}, kind: kind}
	if amr := amrValues(claims); len(amr) > 0 {
		e.Got["amr"] = amr
	} else {
		e.Missing = append(e.Missing, "amr")
	}
	if acr, _ := claims["acr"].(string); acr != "" {
		e.Got["acr"] = acr
	} else if len(p.cfg.MFAACRs) > 0 {
		e.Missing = append(e.Missing, "acr")
	}
	e.Want = "amr among " + formatValue(p.cfg.MFAAMRs)
	if len(p.cfg.MFAACRs) > 0 {
		e.Want += " or acr among " + formatValue(p.cfg.MFAACRs)
	}
	return e
}

// emailVerified reads email_verified: true, or the string "true" some
// providers send; anything else, or nothing, is not verified. The second
// result says what arrived, for the log: "false", "absent" or "true".
func emailVerified(claims map[string]any) (bool, string) {
	switch v := claims["email_verified"].(type) {
	case nil:
		return false, "absent"
	case bool:
		return v, strconv.FormatBool(v)
	case string:
		if v == "true" || v == "false" {
			return v == "true", strconv.Quote(v)
		}
	}
	return false, "not a boolean"
}
