package audit

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// rawOf is what insertEvents stores for e.
func rawOf(t *testing.T, e Event) *rawEvent {
	t.Helper()
	body, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !columnsValidUTF8(&e) {
		e, _ = ParseEvent(body) // as Tx.Append does
	}
	r := &rawEvent{body: body, typ: e.Type, time: e.Time.UnixMilli()}
	for i, v := range []string{e.Organisation, e.Aidant, e.Usager, e.Mandate, e.Service} {
		if v != "" {
			r.cols[i] = column{v, true}
		}
	}
	if len(e.Demarches) > 0 {
		r.cols[5] = column{demarchesColumn(e.Demarches), true}
	}
	return r
}

// TestCheckColumnsAgreesWithTheBody runs the column check on events with
// awkward strings (quotes, backslashes, control characters, non-ASCII,
// invalid UTF-8), which the fast scanner leaves to encoding/json, and on
// plain ones, which it reads itself; every edit of a column is caught.
func TestCheckColumnsAgreesWithTheBody(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	awkward := []string{"", "plain", `q"uote`, `back\slash`, "tab\there", "é à ç", "\u2028", "bad\xffutf8", "<html>&", "x,y"}
	pick := func() string { return awkward[rng.IntN(len(awkward))] + fmt.Sprint(rng.IntN(3)) }
	fast := 0
	for i := range 500 {
		e := Event{Type: Types[rng.IntN(len(Types))], Actor: Actor{Kind: ActorAidant, ID: pick()},
			Time:         Time{time.UnixMilli(rng.Int64N(4e12)).UTC()},
			Organisation: pick(), Aidant: pick(), Usager: pick(), Mandate: pick(), Service: pick(), Reason: pick(),
			Detail: map[string]any{"k": pick(), "nested": map[string]any{"a": []any{pick(), 1.5}}}}
		if i%3 == 0 {
			e.Organisation, e.Service, e.Detail = "", "", nil
		}
		plain := i%5 == 0
		if plain {
			e.Actor.ID, e.Organisation, e.Aidant, e.Usager, e.Mandate, e.Service = "aid_1", "org_1", "aid_1", "usa_1", "", "svc_1"
		}
		if i%2 == 0 {
			e.Demarches = []string{"argent", "social"}
		}
		r := rawOf(t, e)
		var f bodyFields
		if scanBody(r.body, &f) {
			fast++
		} else if plain {
			t.Fatalf("event %d: a plain body left the fast path\n%s", i, r.body)
		}
		if got := checkColumns(r); got != "" {
			t.Fatalf("event %d: a faithful row is flagged at %s\n%s", i, got, r.body)
		}
		for c := range r.cols {
			bad := *r
			if bad.cols[c].valid {
				bad.cols[c] = column{bad.cols[c].v + "x", true}
			} else {
				bad.cols[c] = column{"x", true}
			}
			if got := checkColumns(&bad); got != columnNames[c] {
				t.Fatalf("event %d: editing %s gives %q\n%s", i, columnNames[c], got, r.body)
			}
		}
		bad := *r
		bad.typ += "x"
		if checkColumns(&bad) != "type" {
			t.Fatalf("event %d: type edit not caught", i)
		}
		bad = *r
		bad.time++
		if checkColumns(&bad) != "time" {
			t.Fatalf("event %d: time edit not caught", i)
		}
	}
	if fast < 100 {
		t.Fatalf("only %d of 500 bodies took the fast path", fast)
	}
	if !strings.HasPrefix(string(rawOf(t, Event{Type: AidantLogin, Actor: Actor{Kind: ActorSystem, ID: "x"}, Time: Time{time.Unix(0, 0)}}).body), `{"actor"`) {
		t.Fatal("canonical bodies start with the actor")
	}
}

func TestParseMillisMatchesTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		tm := time.UnixMilli(rng.Int64N(8e12) - 1e12).UTC()
		s := tm.Format(timeLayout)
		if ms, ok := parseMillis(s); !ok || ms != tm.UnixMilli() {
			t.Fatalf("%s: %d %v, want %d", s, ms, ok, tm.UnixMilli())
		}
	}
	for _, s := range []string{"", "2026-13-01T00:00:00.000Z", "2026-01-01 00:00:00.000Z", "2026-01-01T00:00:00.000+", "2026-01-01T00:00:00,000Z"} {
		if _, ok := parseMillis(s); ok {
			t.Fatalf("%q parsed", s)
		}
	}
}
