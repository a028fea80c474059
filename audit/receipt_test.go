package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

func TestReceiptsVerifyOfflineAndRevealTampering(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, store.SQLite)
	l, _ := openLog(t, db)
	for i := range 20 {
		err := l.Write(ctx, func(tx *audit.Tx) error {
			ev := ev(i)
			ev.Usager = "usa_p"
			if i%2 == 1 {
				ev.Usager = "usa_q"
			}
			_, err := tx.Append(ev)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The person's own history, newest first, and only theirs.
	mine, err := l.ForUsager(ctx, "usa_p", 0, 5)
	if err != nil || len(mine) != 5 || mine[0].Index != 18 || mine[4].Index != 10 {
		t.Fatalf("history: %v %+v", err, mine)
	}
	next, _ := l.ForUsager(ctx, "usa_p", mine[4].Index, 5)
	if len(next) != 5 || next[0].Index != 8 {
		t.Fatalf("second page: %+v", next)
	}
	if _, err := l.ReceiptFor(ctx, 3, "usa_p"); !errors.Is(err, audit.ErrOtherUsager) {
		t.Fatalf("someone else's receipt: %v", err)
	}
	r, err := l.ReceiptFor(ctx, 6, "usa_p")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(r)
	got, err := audit.VerifyReceipt(raw, l.VerifierKey(), nil, 0)
	if err != nil || got.Event.Aidant != "aid_6" {
		t.Fatalf("genuine receipt: %v %+v", err, got)
	}

	tamper := func(f func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(raw, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	otherKey, _ := audit.GenerateKey("evil.invalid/audit")
	otherV, _ := audit.VerifierKey(otherKey)
	signer, _ := note.NewSigner(otherKey)
	forgedCP, _ := note.Sign(&note.Note{Text: strings.SplitN(r.Checkpoint, "\n\n", 2)[0] + "\n"}, signer)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"modified event", tamper(func(m map[string]any) { m["event"] = strings.Replace(r.Event, "aid_6", "aid_7", 1) }), "event was modified"},
		{"modified salt", tamper(func(m map[string]any) { m["salt"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }), "event was modified"},
		{"modified entry and leaf", tamper(func(m map[string]any) { m["entry"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }), "event was modified"},
		{"modified proof", tamper(func(m map[string]any) {
			p := m["proof"].([]any)
			p[0], p[1] = p[1], p[0]
		}), "inclusion proof"},
		{"shifted index", tamper(func(m map[string]any) { m["index"] = 8 }), "inclusion proof"},
		{"another key", tamper(func(m map[string]any) { m["key"] = otherV; m["checkpoint"] = string(forgedCP) }), "another key"},
		{"checkpoint signed by another key", tamper(func(m map[string]any) { m["checkpoint"] = string(forgedCP) }), "not verify"},
		{"not a receipt", []byte(`{"hello":1}`), "not a receipt"},
	}
	for _, c := range cases {
		_, err := audit.VerifyReceipt(c.data, l.VerifierKey(), nil, 0)
		var re *audit.ReceiptError
		if !errors.As(err, &re) || !strings.Contains(re.Msg, c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
