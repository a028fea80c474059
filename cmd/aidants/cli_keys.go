package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"aidants/store"
)

// cmdKeysRotate makes new signing keys for ID tokens, access tokens and
// mandates; the old keys stop signing and stay in the JWKS until what they
// signed has expired. The audit log's checkpoint key is not touched.
func cmdKeysRotate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	in, err := openPlain(ctx, "keys rotate", args, stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	kids, err := in.keys.Rotate(ctx, operator)
	if err != nil {
		return fmt.Errorf("keys rotate: %w", err)
	}
	fmt.Fprintf(stdout, "new signing keys: %s\n(the previous keys stay published until what they signed has expired; a running server signs with the new ones within 30 seconds)\n",
		strings.Join(kids, ", "))
	return nil
}

// cmdBackup writes a consistent copy of the database while the service
// runs: SQLite's VACUUM INTO reads one snapshot (writers go on), and on
// PostgreSQL pg_dump does the same in one repeatable-read transaction.
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("backup")
	env := addEnvFlags(f)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("backup: give the file to write, once (aidants backup FILE)")
	}
	target, err := filepath.Abs(pos[0])
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	cfg, err := env.load("")
	if err != nil {
		return err
	}
	// The copy holds everything: it is created here, new, readable by its
	// owner only; the database writes into it.
	f0, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("backup: %s already exists: give a new file", pos[0])
	} else if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f0.Close()
	if store.Dialect(cfg.Database.Driver) == store.Postgres {
		if _, err := exec.LookPath("pg_dump"); err != nil {
			return errors.New("backup: PostgreSQL backups use pg_dump, which is not installed here")
		}
		// The connection goes in libpq's environment, not on the command
		// line, where ps would show the password.
		pc, err := pgconn.ParseConfig(cfg.Database.DSN)
		if err != nil {
			os.Remove(target)
			return errors.New("backup: database.dsn is not a PostgreSQL connection string")
		}
		cmd := exec.CommandContext(ctx, "pg_dump", "--format=custom", "--no-owner", "--file", target)
		cmd.Env = append(os.Environ(), "PGHOST="+pc.Host, fmt.Sprintf("PGPORT=%d", pc.Port), "PGUSER="+pc.User,
			"PGPASSWORD="+pc.Password, "PGDATABASE="+pc.Database)
		if pc.TLSConfig != nil {
			cmd.Env = append(cmd.Env, "PGSSLMODE=require")
		}
		cmd.Stderr = stderr
		if err := cmd.Run(); err != nil {
			os.Remove(target)
			return fmt.Errorf("backup: pg_dump: %w", err)
		}
		fmt.Fprintf(stdout, "backup written to %s (pg_dump custom format: restore with pg_restore)\n", target)
		return nil
	}
	db, err := store.Open(ctx, "sqlite", cfg.Database.DSN, store.Options{MaxOpenConns: 1, NoCheckpointer: true})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.W.ExecContext(ctx, `VACUUM INTO ?`, target); err != nil {
		os.Remove(target)
		return fmt.Errorf("backup: %w", err)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "backup written to %s (%d bytes): a SQLite database, usable as database.dsn\n", target, fi.Size())
	return nil
}
