package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// reference is what encoding/json writes for an event, the definition of
// its canonical form.
func reference(e *Event) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(e)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	tricky := []string{"", "simple", `quo"te`, `back\slash`, "new\nline\r\t", "\x00\x01\x1f\x7f", "<b>&amp;</b>",
		"Joséphine Lefèvre", "line\u2028sep\u2029", "bad\xffutf8\xc3", "emoji 😀", "€", "\u00e9\u0301"}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return tricky[rng.IntN(len(tricky))] }
	for i := range 5000 {
		e := &Event{
			Type: pick(), Actor: Actor{Kind: pick(), ID: pick()}, Aidant: pick(), Organisation: pick(),
			Usager: pick(), Mandate: pick(), Service: pick(), Reason: pick(),
			Time: Time{time.UnixMilli(rng.Int64N(4e12)).UTC()},
		}
		if i%3 == 0 {
			e.Demarches = []string{pick(), pick()}
		}
		if i%5 == 0 {
			e.Detail = map[string]any{pick(): pick(), "n": i, "b": true, "l": []any{pick(), 1.5}}
		}
		got, err := e.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		if want := reference(e); !bytes.Equal(got, want) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func BenchmarkCanonical(b *testing.B) {
	e := &Event{Type: MandateUsed, Actor: Actor{Kind: ActorAidant, ID: "aid_0000000000000000000000000001"},
		Aidant: "aid_0000000000000000000000000001", Organisation: "org_00000000000000000000000001",
		Usager: "usa_00000000000000000000000001", Mandate: "man_00000000000000000000000001", Service: "svc_impots",
		Demarches: []string{"argent"}, Time: Time{time.Now()}}
	for b.Loop() {
		e.Canonical()
	}
}
