package audit

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// rawOf is what the verify query reads for e as Tx.Append stores it:
// salt ‖ body, and the packed columns, built here field by field.
func rawOf(t *testing.T, e Event) (*rawEvent, []string) {
	t.Helper()
	body, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !columnsValidUTF8(&e) {
		e, _ = ParseEvent(body) // as Tx.Append does
	}
	fields := []string{"32", e.Type, fmt.Sprint(e.Time.UnixMilli())}
	for _, v := range []string{e.Organisation, e.Aidant, e.Usager, e.Mandate, e.Service} {
		if v == "" {
			fields = append(fields, "-")
		} else {
			fields = append(fields, "="+v)
		}
	}
	if len(e.Demarches) > 0 {
		fields = append(fields, "=,"+strings.Join(e.Demarches, ",")+",")
	} else {
		fields = append(fields, "-")
	}
	salt := make([]byte, 32)
	return &rawEvent{saltBody: append(salt, body...), columns: strings.Join(fields, "\x1f")}, fields
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
		r, fields := rawOf(t, e)
		body := r.saltBody[32:]
		var f bodyFields
		if scanBody(body, &f) {
			fast++
		} else if plain {
			t.Fatalf("event %d: a plain body left the fast path\n%s", i, body)
		}
		if got, _ := checkPacked(r, nil); got != "" {
			t.Fatalf("event %d: a faithful row is flagged at %s\n%s", i, got, body)
		}
		for c := range fields {
			edited := append([]string{}, fields...)
			switch {
			case edited[c] == "-":
				edited[c] = "=x"
			case c == 2:
				edited[c] = fmt.Sprint(e.Time.UnixMilli() + 1)
			default:
				edited[c] += "x"
			}
			bad := *r
			bad.columns = strings.Join(edited, "\x1f")
			if got, _ := checkPacked(&bad, nil); got != packedNames[c] {
				t.Fatalf("event %d: editing %s gives %q\n%s", i, packedNames[c], got, body)
			}
		}
	}
	if fast < 100 {
		t.Fatalf("only %d of 500 bodies took the fast path", fast)
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
