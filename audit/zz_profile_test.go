package audit_test

import (
	"context"
	"os"
	"testing"
	"time"

	"aidants/audit"
	"aidants/store"
)

func TestVerifyFixtureProfile(t *testing.T) {
	path := os.Getenv("VERIFY_FIXTURE")
	if path == "" {
		t.Skip()
	}
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite", path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var vkey string
	db.R.Get(&vkey, `SELECT vkey FROM audit_origins WHERE no = 1`)
	for i := range 2 {
		t0 := time.Now()
		res, err := audit.VerifyWith(ctx, db, vkey, audit.VerifyOptions{BodiesOnly: false})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("bodies only %v: %d events in %v: %.0f/s", i%2 == 1, res.Size, time.Since(t0), float64(res.Size)/time.Since(t0).Seconds())
	}
}
