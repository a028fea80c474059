package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"aidants/audit"
	"aidants/config"
	"aidants/witness"
)

// Development mode keeps the journal witnessed offline: one built-in
// witness (package witness's Server), with its own key and state in the
// data directory, on a loopback port of its own. It is shown as "témoin de
// développement" wherever witnesses are named.

func devWitnessKeyFile(dir string) string { return filepath.Join(dir, "dev-witness.key") }

// devWitnessKey returns the development witness's verifier key, making its
// key on first use.
func devWitnessKey(dir string) (string, error) {
	priv, err := witness.LoadOrCreateKey(devWitnessKeyFile(dir))
	if err != nil {
		return "", err
	}
	v, err := witness.NewVerifier(witness.DevWitnessName, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

// startDevWitness serves the development witness for the log of cfg and
// points cfg's witness at it. stop shuts it down.
func startDevWitness(ctx context.Context, dir string, cfg *config.Config) (stop func(), err error) {
	priv, err := witness.LoadOrCreateKey(devWitnessKeyFile(dir))
	if err != nil {
		return nil, fmt.Errorf("development witness: %w", err)
	}
	vkey, err := audit.VerifierKey(cfg.Audit.SigningKey)
	if err != nil {
		return nil, err
	}
	srv, err := witness.NewServer(witness.ServerOptions{Name: witness.DevWitnessName, Key: priv,
		Logs: map[string]string{cfg.Audit.Origin: vkey}, StatePath: filepath.Join(dir, "dev-witness-state.json")})
	if err != nil {
		return nil, fmt.Errorf("development witness: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("development witness: %w", err)
	}
	hs := &http.Server{Handler: http.MaxBytesHandler(srv, 16<<10), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("development witness:", err)
		}
	}()
	for i := range cfg.Audit.Witnesses {
		cfg.Audit.Witnesses[i].URL = "http://" + ln.Addr().String()
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}, nil
}
