package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/devidp"
)

// fetch GETs a public endpoint and returns status and body.
func fetch(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// thirdPartyCheckpoint verifies the newest signed checkpoint with the
// served key, using only golang.org/x/mod/sumdb/note, as an outside
// verifier would. (/audit/checkpoint serves the newest witnessed one,
// which may lag behind by the witnessing interval.)
func thirdPartyCheckpoint(t *testing.T, base string) (size int64, root tlog.Hash, raw []byte) {
	t.Helper()
	_, key := fetch(t, base+"/audit/key")
	v, err := note.NewVerifier(strings.TrimSpace(string(key)))
	if err != nil {
		t.Fatalf("/audit/key %q: %v", key, err)
	}
	_, raw = fetch(t, base+"/audit/checkpoint/latest")
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint does not verify with the published key: %v\n%s", err, raw)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[0] != v.Name() || lines[3] != "" {
		t.Fatalf("checkpoint is not origin/size/root: %q", n.Text)
	}
	size, err = strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rb) != 32 {
		t.Fatalf("root %q", lines[2])
	}
	copy(root[:], rb)
	return size, root, raw
}

func TestPublicProofsVerifyWithTheHTTPAnswersAndTheKeyAlone(t *testing.T) {
	s := startDev(t, "")
	oldSize, oldRoot, _ := thirdPartyCheckpoint(t, s.URL)
	if oldSize == 0 {
		t.Fatal("the seeded log is empty")
	}
	// Grow the log: sign-ins and refusals are journaled.
	for range 5 {
		signInAidant(t, browser(t), s, devidp.SubCamille)
		signInAidant(t, browser(t), s, devidp.SubDominique)
	}
	size, root, _ := thirdPartyCheckpoint(t, s.URL)
	if size < oldSize+10 {
		t.Fatalf("log grew from %d to %d, want at least 10 more", oldSize, size)
	}
	for i := int64(0); i < size; i++ {
		status, body := fetch(t, fmt.Sprintf("%s/audit/proof/inclusion?index=%d&size=%d", s.URL, i, size))
		if status != http.StatusOK {
			t.Fatalf("inclusion %d: %d %s", i, status, body)
		}
		var p struct {
			Index    int64       `json:"index"`
			Size     int64       `json:"size"`
			LeafHash tlog.Hash   `json:"leaf_hash"`
			Hashes   []tlog.Hash `json:"hashes"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Index != i || p.Size != size {
			t.Fatalf("inclusion %d: answered %+v", i, p)
		}
		if err := tlog.CheckRecord(p.Hashes, size, root, i, p.LeafHash); err != nil {
			t.Fatalf("inclusion proof of %d does not verify: %v", i, err)
		}
		if strings.Contains(string(body), "aid_") || strings.Contains(string(body), "type") {
			t.Fatalf("a proof leaks event contents: %s", body)
		}
	}
	status, body := fetch(t, fmt.Sprintf("%s/audit/proof/consistency?old=%d&size=%d", s.URL, oldSize, size))
	if status != http.StatusOK {
		t.Fatalf("consistency: %d %s", status, body)
	}
	var c struct {
		Old    int64       `json:"old"`
		Size   int64       `json:"size"`
		Hashes []tlog.Hash `json:"hashes"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(c.Hashes, size, root, oldSize, oldRoot); err != nil {
		t.Fatalf("consistency %d→%d does not verify: %v", oldSize, size, err)
	}
}

func TestProofEndpointsRefuseBadParameters(t *testing.T) {
	s := startDev(t, "")
	size, _, _ := thirdPartyCheckpoint(t, s.URL)
	cases := []struct{ query, want string }{
		{"inclusion?index=-1&size=3", "index must not be negative"},
		{"inclusion?index=abc&size=3", "index must be a decimal integer"},
		{"inclusion?index=1", "size is required"},
		{"inclusion?index=3&size=3", "index must be between 0 and size-1"},
		{fmt.Sprintf("inclusion?index=0&size=%d", size+1), "size is beyond the latest checkpoint"},
		{"inclusion?index=0&index=1&size=3", "index is required, once"},
		{"inclusion?index=+1&size=3", "decimal integer"},
		{"consistency?old=0&size=3", "old must be between 1 and size"},
		{"consistency?old=4&size=3", "old must be between 1 and size"},
		{fmt.Sprintf("consistency?old=1&size=%d", size+1), "size is beyond the latest checkpoint"},
		{"consistency?old=1&size=9999999999999999999999", "size must be a decimal integer"},
	}
	for _, c := range cases {
		status, body := fetch(t, s.URL+"/audit/proof/"+c.query)
		if status != http.StatusBadRequest || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %s, want 400 with %q", c.query, status, body, c.want)
		}
	}
}
