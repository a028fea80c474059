package provider_test

import (
	"net/url"
	"strings"
	"testing"

	"aidants/store"
	"aidants/store/storetest"
)

func TestLogoutReturnsOnlyToRegisteredURIs(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	id, _ := e.tokens(e.code(e.jwt))
	parts := strings.Split(id, ".")
	sig := []byte(parts[2])
	sig[10] = map[bool]byte{true: 'B', false: 'A'}[sig[10] == 'A']
	forged := parts[0] + "." + parts[1] + "." + string(sig)
	cases := []struct {
		name            string
		q               url.Values
		redirect, name2 string
	}{
		{"client_id and a registered URI", url.Values{"client_id": {e.jwt.svc.ID}, "post_logout_redirect_uri": {e.jwt.logout},
			"state": {"xyz"}}, e.jwt.logout + "?state=xyz", "service-a"},
		{"id_token_hint and a registered URI", url.Values{"id_token_hint": {id}, "post_logout_redirect_uri": {e.jwt.logout}},
			e.jwt.logout, "service-a"},
		{"an unregistered URI", url.Values{"client_id": {e.jwt.svc.ID}, "post_logout_redirect_uri": {"https://ailleurs.test.invalid/"}},
			"", "service-a"},
		{"another service's URI", url.Values{"client_id": {e.jwt.svc.ID}, "post_logout_redirect_uri": {e.basic.logout}}, "", "service-a"},
		{"a hint of another client", url.Values{"id_token_hint": {id}, "client_id": {e.basic.svc.ID},
			"post_logout_redirect_uri": {e.basic.logout}}, "", ""},
		{"a forged hint", url.Values{"id_token_hint": {forged}, "post_logout_redirect_uri": {e.jwt.logout}}, "", ""},
		{"no client", url.Values{"post_logout_redirect_uri": {e.jwt.logout}}, "", ""},
	}
	for _, c := range cases {
		redirect, name, err := e.p.Logout(e.ctx, c.q)
		if err != nil || redirect != c.redirect || name != c.name2 {
			t.Errorf("%s: Logout = %q, %q, %v; want %q, %q", c.name, redirect, name, err, c.redirect, c.name2)
		}
	}
}
