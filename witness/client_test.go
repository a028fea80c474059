package witness

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// TestAddCheckpointSendsTheProtocolBody checks the request on the wire
// against the format of c2sp.org/tlog-witness, byte for byte.
func TestAddCheckpointSendsTheProtocolBody(t *testing.T) {
	l := newTestLog(t, "example.test/log").grow(t, 12, "entry")
	signed := l.checkpoint(t, 12)
	proof := l.proof(t, 5, 12)
	want := "old 5\n"
	for _, h := range proof {
		want += h.String() + "\n"
	}
	want += "\n" + string(signed)

	var got, method, path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, method, path = string(b), r.Method, r.URL.Path
		io.WriteString(w, "— witness.example/w1 AAAAAAAA\n")
	}))
	defer srv.Close()
	if _, err := AddCheckpoint(context.Background(), srv.Client(), srv.URL+"/prefix/", 5, proof, signed); err != nil {
		t.Fatal(err)
	}
	if method != http.MethodPost || path != "/prefix/add-checkpoint" {
		t.Errorf("request %s %s, want POST /prefix/add-checkpoint", method, path)
	}
	if got != want {
		t.Errorf("body:\n%s\nwant:\n%s", got, want)
	}
}

// TestAddCheckpointClassifiesAnswers checks how each answer a witness may
// give, including broken ones, reaches the caller.
func TestAddCheckpointClassifiesAnswers(t *testing.T) {
	const line = "— witness.example/w1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
	const sizeType = "text/x.tlog.size"
	malformed := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, ErrMalformedResponse) || IsRefusal(err) || IsTransient(err) {
			t.Fatalf("err = %v, want only ErrMalformedResponse", err)
		}
	}
	transient := func(t *testing.T, err error) {
		t.Helper()
		if !IsTransient(err) || IsRefusal(err) {
			t.Fatalf("err = %v, want transient", err)
		}
	}
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		check       func(t *testing.T, err error) // nil: success with body
	}{
		{"one cosignature", 200, "", line, nil},
		{"two cosignatures", 200, "", line + strings.Replace(line, "w1", "w2", 1), nil},
		{"empty 200", 200, "", "", malformed},
		{"text 200", 200, "", "ok\n", malformed},
		{"line without newline", 200, "", strings.TrimSuffix(line, "\n"), malformed},
		{"line with bad base64", 200, "", "— witness.example/w1 !!!!\n", malformed},
		{"line with short signature", 200, "", "— witness.example/w1 AAAA\n", malformed},
		{"huge 200", 200, "", strings.Repeat(line, 1000), malformed},
		{"conflict", 409, sizeType, "9\n", wantConflict(9)},
		{"conflict at the old size is a fork", 409, sizeType, "5\n", wantRefusal(ErrInconsistent)},
		{"conflict without content type", 409, "text/plain", "9\n", malformed},
		{"conflict without newline", 409, sizeType, "9", malformed},
		{"conflict with leading zero", 409, sizeType, "09\n", malformed},
		{"conflict with negative size", 409, sizeType, "-1\n", malformed},
		{"not found", 404, "text/plain", "unknown log\n", wantRefusal(ErrUnknownLog)},
		{"forbidden unknown log (litewitness)", 403, "text/plain", "unknown log\n", wantRefusal(ErrUnknownLog)},
		{"forbidden signature", 403, "text/plain", "invalid signature\n", wantRefusal(ErrBadSignature)},
		{"unprocessable", 422, "text/plain", "bad consistency proof\n", wantRefusal(ErrInconsistent)},
		{"bad request", 400, "text/plain", "invalid input\n", wantRefusal(ErrBadRequest)},
		{"too large", 413, "text/plain", "too large\n", wantRefusal(ErrRefused)},
		{"server error", 500, "text/plain", "database locked\n", transient},
		{"unavailable", 503, "text/plain", "", transient},
		{"rate limited", 429, "text/plain", "", transient},
		{"redirect", 304, "", "", malformed},
	}
	l := newTestLog(t, "example.test/log").grow(t, 12, "entry")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.contentType != "" {
					w.Header().Set("Content-Type", c.contentType)
				}
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			}))
			defer srv.Close()
			got, err := AddCheckpoint(context.Background(), srv.Client(), srv.URL, 5, l.proof(t, 5, 12), l.checkpoint(t, 12))
			if c.check == nil {
				if err != nil || string(got) != c.body {
					t.Fatalf("AddCheckpoint = %q, %v; want %q", got, err, c.body)
				}
				return
			}
			if got != nil {
				t.Errorf("AddCheckpoint returned lines %q with an error", got)
			}
			c.check(t, err)
		})
	}
}

// TestAddCheckpointNetworkFailureIsTransient checks that a witness that is
// down, or too slow for the caller's deadline, is a transient failure.
func TestAddCheckpointNetworkFailureIsTransient(t *testing.T) {
	l := newTestLog(t, "example.test/log").grow(t, 3, "entry")
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	_, err := AddCheckpoint(context.Background(), nil, down.URL, 0, nil, l.checkpoint(t, 3))
	if !IsTransient(err) || IsRefusal(err) {
		t.Fatalf("witness down: err = %v, want transient", err)
	}

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = AddCheckpoint(ctx, nil, slow.URL, 0, nil, l.checkpoint(t, 3))
	if !IsTransient(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow witness: err = %v, want transient with deadline exceeded", err)
	}
}

// TestAddCheckpointRefusesImpossibleRequests checks that requests the
// protocol forbids are not sent.
func TestAddCheckpointRefusesImpossibleRequests(t *testing.T) {
	l := newTestLog(t, "example.test/log").grow(t, 3, "entry")
	signed := l.checkpoint(t, 3)
	sent := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent = true }))
	defer srv.Close()
	cases := []struct {
		name   string
		old    int64
		proof  tlog.TreeProof
		signed []byte
	}{
		{"negative old size", -1, nil, signed},
		{"proof from size 0", 0, tlog.TreeProof{{}}, signed},
		{"proof of 64 hashes", 1, make(tlog.TreeProof, 64), signed},
		{"checkpoint without final newline", 0, nil, signed[:len(signed)-1]},
		{"no checkpoint", 0, nil, nil},
	}
	for _, c := range cases {
		if _, err := AddCheckpoint(context.Background(), srv.Client(), srv.URL, c.old, c.proof, c.signed); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if sent {
		t.Error("a forbidden request was sent")
	}
}
