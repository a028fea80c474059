package seal_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"aidants/internal/seal"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

type pending struct {
	State string `json:"state"`
	Data  string `json:"data"`
}

func TestSealedValueOpensOnlyUnderItsNameAndKey(t *testing.T) {
	s, err := seal.New(secret, "test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Seal("demande", pending{State: "s1", Data: "le brouillon"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, "brouillon") || strings.Contains(v, "s1") {
		t.Fatalf("the sealed value shows its content: %s", v)
	}
	var got pending
	if err := s.Open("demande", v, &got); err != nil || got.State != "s1" || got.Data != "le brouillon" {
		t.Fatalf("open: %v, %+v", err, got)
	}

	other, _ := seal.New(secret, "another purpose", time.Minute)
	otherKey, _ := seal.New([]byte("another secret of thirty-two bytes!!"), "test", time.Minute)
	flipped := []byte(v)
	flipped[len(flipped)/2] ^= 1
	for _, c := range []struct {
		name   string
		s      *seal.Sealer
		label  string
		sealed string
	}{
		{"another name", s, "connexion", v},
		{"another purpose", other, "demande", v},
		{"another secret", otherKey, "demande", v},
		{"one bit changed", s, "demande", string(flipped)},
		{"empty", s, "demande", ""},
		{"truncated", s, "demande", v[:len(v)-4]},
		{"too long", s, "demande", strings.Repeat("a", 9000)},
	} {
		var p pending
		if err := c.s.Open(c.label, c.sealed, &p); !errors.Is(err, seal.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, err)
		}
	}
}

func TestSealedValueExpires(t *testing.T) {
	if testing.Short() {
		t.Skip("waits two seconds")
	}
	s, _ := seal.New(secret, "test", 0)
	v, _ := s.Seal("x", pending{State: "s"})
	time.Sleep(2100 * time.Millisecond)
	var p pending
	if err := s.Open("x", v, &p); !errors.Is(err, seal.ErrInvalid) {
		t.Fatalf("a value past its life opens: %v", err)
	}
}

func TestShortSecretIsRefused(t *testing.T) {
	if _, err := seal.New([]byte("short"), "test", time.Minute); err == nil {
		t.Fatal("a 5-byte secret is accepted")
	}
}
