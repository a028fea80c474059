package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestACRMeetsAskedValuesWithEIDASLevelsOrdered(t *testing.T) {
	for _, tc := range []struct {
		acr, asked string
		ok         bool
	}{
		{"eidas1", "eidas1", true},
		{"eidas2", "eidas1", true},
		{"eidas3", "eidas1", true},
		{"eidas1", "eidas2", false},
		{"eidas2", "eidas2", true},
		{"eidas3", "eidas2", true},
		{"eidas2", "eidas3", false},
		{"eidas2", "eidas3 eidas2", true},
		{"eidas1", "eidas3 eidas2", false},
		{"", "eidas1", false},
		{"eidas0", "eidas1", false},
		{"eidas9", "eidas1", false},
		{"EIDAS2", "eidas1", false},
		// Values outside the eIDAS levels are met only by themselves.
		{"https://proconnect.gouv.fr/assurance/consistency-checked", "https://proconnect.gouv.fr/assurance/consistency-checked", true},
		{"https://proconnect.gouv.fr/assurance/self-asserted", "https://proconnect.gouv.fr/assurance/consistency-checked", false},
		{"eidas3", "https://proconnect.gouv.fr/assurance/consistency-checked", false},
		{"https://proconnect.gouv.fr/assurance/consistency-checked", "eidas1", false},
	} {
		if got := acrMeets(tc.acr, tc.asked); got != tc.ok {
			t.Errorf("acrMeets(%q, %q) = %v, want %v", tc.acr, tc.asked, got, tc.ok)
		}
	}
}

func TestHasMFAIsAnAMRValueOrAnACRListed(t *testing.T) {
	p := &rp{cfg: ProviderConfig{MFAAMRs: []string{"otp", "hwk"}, MFAACRs: []string{"eidas2"}}}
	for _, tc := range []struct {
		claims map[string]any
		ok     bool
	}{
		{map[string]any{"amr": []any{"pwd", "otp"}}, true},
		{map[string]any{"amr": []any{"hwk"}}, true},
		{map[string]any{"amr": "otp"}, true},
		{map[string]any{"amr": []any{"pwd", "mfa"}}, false}, // "mfa" is not listed here
		{map[string]any{"amr": []any{"pwd"}, "acr": "eidas2"}, true},
		{map[string]any{"amr": []any{"pwd"}, "acr": "eidas1"}, false},
		{map[string]any{"amr": []any{1, true}}, false},
		{map[string]any{}, false},
	} {
		if got := p.hasMFA(tc.claims); got != tc.ok {
			t.Errorf("hasMFA(%v) = %v, want %v", tc.claims, got, tc.ok)
		}
	}
}

func TestClaimsErrorSaysNamesAndBoundedValuesOnly(t *testing.T) {
	p := &rp{name: Aidants, cfg: ProviderConfig{MFAAMRs: []string{"mfa"}, MFAACRs: []string{"x"}}}
	e := p.mfaRefusal(map[string]any{"amr": []any{"pwd", strings.Repeat("z", 500)}, "email": "camille@example.org"}, ErrMFARequired)
	if !errors.Is(e, ErrMFARequired) || errors.Is(e, ErrBadToken) {
		t.Errorf("mfa refusal unwraps to %v", e.kind)
	}
	msg := e.Error()
	for _, want := range []string{"aidants answer refused (mfa_required)", "missing acr", "amr=[pwd zzz", "…]", `want amr among [mfa] or acr among [x]`} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "camille") || strings.Contains(msg, strings.Repeat("z", 65)) {
		t.Errorf("%q holds more than names and bounded values", msg)
	}
	if v, what := emailVerified(map[string]any{"email_verified": "camille@example.org"}); v || what != "not a boolean" {
		t.Errorf("email_verified holding an address: %v %q", v, what)
	}
}
