package audit_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"aidants/audit"
	"aidants/store"
)

const crashChildEnv = "AIDANTS_AUDIT_CRASH_CHILD"

// crashChild is the child process: it writes events from many goroutines
// as fast as it can and prints "ack <index> <actor>" once each Write has
// returned nil, until it is killed.
func crashChild() {
	path, skey := os.Getenv(crashChildEnv), os.Getenv("AIDANTS_AUDIT_CRASH_KEY")
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite", path, store.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := db.Migrate(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: skey})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				actor := fmt.Sprintf("p%d-w%d-%d", os.Getpid(), w, i)
				var idx int64
				err := l.Write(ctx, func(tx *audit.Tx) error {
					if _, err := tx.Exec(`INSERT INTO instance_meta (key, value) VALUES (?, ?)`, actor, "x"); err != nil {
						return err
					}
					var err error
					idx, err = tx.Append(audit.Event{Type: audit.AidantLogin, Actor: audit.Actor{Kind: audit.ActorAidant, ID: actor}, Aidant: actor})
					return err
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d %s\n", idx, actor)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashLosesNoAcknowledgedEvent kills a writing process with SIGKILL
// in the middle of a load and checks that every event it acknowledged is
// present, with its state change, and that the log verifies.
func TestCrashLosesNoAcknowledgedEvent(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/crash.db"
	skey, _ := audit.GenerateKey(origin)
	acked := map[int64]string{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, "AIDANTS_AUDIT_CRASH_KEY="+skey)
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		target := 1500 + 700*round
		deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ack" {
				continue
			}
			idx, _ := strconv.ParseInt(f[1], 10, 64)
			if prev, dup := acked[idx]; dup {
				t.Fatalf("index %d acknowledged twice (%s, %s)", idx, prev, f[2])
			}
			acked[idx] = f[2]
			if n++; n == target {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		deadline.Stop()
		cmd.Wait()
		if n < target {
			t.Fatalf("round %d: child acknowledged only %d writes: %s", round, n, stderr.String())
		}
	}
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite", path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type row struct {
		Idx   int64  `db:"idx"`
		Actor string `db:"aidant_id"`
	}
	var rows []row
	if err := db.R.Select(&rows, `SELECT idx, aidant_id FROM audit_events`); err != nil {
		t.Fatal(err)
	}
	have := map[int64]string{}
	for _, r := range rows {
		have[r.Idx] = r.Actor
	}
	for idx, actor := range acked {
		if have[idx] != actor {
			t.Fatalf("acknowledged event %d (%s) is lost or different: %q", idx, actor, have[idx])
		}
		var n int
		db.R.Get(&n, `SELECT COUNT(*) FROM instance_meta WHERE key = ?`, actor)
		if n != 1 {
			t.Fatalf("the state change of acknowledged event %d is lost", idx)
		}
	}
	vkey, _ := audit.VerifierKey(skey)
	res, err := audit.Verify(ctx, db, vkey, nil)
	if err != nil {
		t.Fatalf("verify after crashes: %v", err)
	}
	t.Logf("%d acknowledged events over 3 crashes, %d in the log, verified", len(acked), res.Size)
}
