package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"aidants/mandate"
)

// errNotValid makes `mandate verify` exit non-zero for anything but a
// valid mandate, after printing why.
type errNotValid struct{ status string }

func (e errNotValid) Error() string { return "mandate verify: " + e.status }

func cmdMandateVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("mandate verify")
	env := addEnvFlags(f)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("mandate verify: give one FILE (or - for stdin)")
	}
	var in io.Reader = os.Stdin
	if pos[0] != "-" {
		file, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("mandate verify: %w", err)
		}
		defer file.Close()
		in = file
	}
	b, err := io.ReadAll(io.LimitReader(in, 64<<10))
	if err != nil {
		return fmt.Errorf("mandate verify: %w", err)
	}
	inst, err := openFromFlags(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer inst.Close()
	v, err := inst.mandates.Verify(ctx, string(b))
	if err != nil {
		return fmt.Errorf("mandate verify: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %s\n", v.Status, v.Reason)
	if c := v.Claims; c != nil {
		fmt.Fprintf(stdout, "mandate %s, %s %s (born %s), organisation %s (SIRET %s), démarches %s, from %s to %s\n",
			c.ID, c.Usager.GivenName, c.Usager.FamilyName, c.Usager.Birthdate, c.Org.Name, c.Org.SIRET,
			strings.Join(c.Demarches, ","), time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339), time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
		if len(v.Revoked) > 0 {
			fmt.Fprintf(stdout, "withdrawn démarches: %s\n", strings.Join(v.Revoked, ","))
		}
	}
	if v.Status != mandate.VerifyValid {
		return errNotValid{v.Status}
	}
	return nil
}
