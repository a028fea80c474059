package mail_test

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
	"aidants/mail"
	"aidants/mail/mailpittest"
	"aidants/store"
	"aidants/store/storetest"
)

const crashChildEnv = "AIDANTS_MAIL_CRASH_CHILD"

// crashChild is the child process, a server in miniature: goroutines
// queue messages, each in a unit that also journals an event, and print
// "ack <subject>" once it committed, while the sender delivers to the
// relay of AIDANTS_MAIL_CRASH_SMTP and the child prints "sent <n>" as the
// count grows, until it is killed.
func crashChild() {
	path, skey, relayURL := os.Getenv(crashChildEnv), os.Getenv("AIDANTS_MAIL_CRASH_KEY"), os.Getenv("AIDANTS_MAIL_CRASH_SMTP")
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite", path, store.Options{})
	if err != nil {
		fail(err)
	}
	if _, err := db.Migrate(ctx); err != nil {
		fail(err)
	}
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: skey, Logger: quiet})
	if err != nil {
		fail(err)
	}
	o, err := mail.NewOutbox(from)
	if err != nil {
		fail(err)
	}
	tr, err := mail.NewSMTP(relayURL, "")
	if err != nil {
		fail(err)
	}
	// Short leases: the next child takes over what this one held.
	s, err := mail.NewSender(l, mail.SenderOptions{From: from, Transport: tr, Logger: quiet, Poll: 5 * time.Millisecond, Batch: 4,
		Timeout: 500 * time.Millisecond, Lease: time.Second})
	if err != nil {
		fail(err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(line string) {
		mu.Lock()
		fmt.Fprintln(out, line)
		out.Flush()
		mu.Unlock()
	}
	go s.Run(ctx)
	go func() {
		var last int64
		for {
			if n := s.Stats().Sent.Load(); n != last {
				say("sent " + strconv.FormatInt(n, 10))
				last = n
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				subject := fmt.Sprintf("Message-%d-%d-%d", os.Getpid(), w, i)
				err := l.Write(ctx, func(tx *audit.Tx) error {
					if _, err := tx.Append(audit.Event{Type: audit.MandateUsed, Actor: audit.Actor{Kind: audit.ActorAidant, ID: "aid_1"}, Mandate: subject}); err != nil {
						return err
					}
					return o.Queue(tx, plain("dominique@exemple.fr", subject))
				})
				if err != nil {
					fail(err)
				}
				say("ack " + subject)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	select {}
}

// TestKilledServerLosesNoMessage kills (SIGKILL) a process that queues
// messages and delivers them, three times at random points of its work,
// restarting it on the same database each time; then a last start
// delivers what is left. Every message whose unit committed reaches the
// relay, and a message that reached it twice (sent, then killed before
// that was recorded) carries the same Message-ID both times.
func TestKilledServerLosesNoMessage(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Options{})
	path := t.TempDir() + "/crash.db"
	skey, _ := audit.GenerateKey(origin)
	acked := map[string]bool{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, "AIDANTS_MAIL_CRASH_KEY="+skey, "AIDANTS_MAIL_CRASH_SMTP=smtp://"+mp.SMTPAddr)
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		target := 100 + 70*round // acknowledged in this round before the kill
		n, sent, killed := 0, int64(0), false
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			kind, v, _ := strings.Cut(sc.Text(), " ")
			switch kind {
			case "ack":
				acked[v] = true
				n++
			case "sent":
				sent, _ = strconv.ParseInt(v, 10, 64)
			}
			if !killed && n >= target && sent >= int64(target/3) {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		deadline.Stop()
		cmd.Wait()
		if !killed {
			t.Fatalf("round %d: the child stopped after %d acknowledged, %d sent: %s", round, n, sent, stderr.String())
		}
		t.Logf("round %d: killed after %d messages acknowledged and %d sent", round, n, sent)
	}

	// The restart: past every lease, deliver what is left.
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite", path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: skey, Logger: quiet, Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	left, _ := mail.List(ctx, db, 100000)
	waiting := 0
	for _, q := range left {
		if q.SentAt.IsZero() {
			waiting++
		}
	}
	s, err := mail.NewSender(l, mail.SenderOptions{From: from, Transport: relay(t, mp, "smtp", "", ""), Logger: quiet, Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		r, err := s.DeliverDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Claimed == 0 && s.Pending() == 0 {
			break
		}
		if r.Failed+r.GaveUp > 0 || i > 100 {
			t.Fatalf("round %d after the restart: %+v", i, r)
		}
	}

	rows, err := mail.List(ctx, db, 100000)
	if err != nil {
		t.Fatal(err)
	}
	received := map[string][]string{} // Message-ID → subjects received under it
	for _, m := range mp.WaitMessages(t, len(rows), 10*time.Second) {
		received[m.MessageID] = append(received[m.MessageID], m.Subject)
	}
	bySubject := map[string]mail.Queued{}
	duplicates := 0
	for _, q := range rows {
		bySubject[q.Subject] = q
		if q.SentAt.IsZero() {
			t.Errorf("%s is not sent after the restart: %+v", q.Subject, q)
		}
		subjects := received[bare(q.MessageID)]
		if len(subjects) == 0 {
			t.Errorf("%s (%s) never reached the relay", q.Subject, q.MessageID)
		}
		for _, s := range subjects {
			if s != q.Subject {
				t.Errorf("Message-ID %s reached the relay as %q and as %q", q.MessageID, q.Subject, s)
			}
		}
		duplicates += max(0, len(subjects)-1)
		delete(received, bare(q.MessageID))
	}
	if len(received) != 0 {
		t.Errorf("the relay got messages the outbox never had: %v", received)
	}
	for subject := range acked {
		if _, ok := bySubject[subject]; !ok {
			t.Errorf("acknowledged %s is not in the outbox", subject)
		}
	}
	t.Logf("%d acknowledged, %d queued, %d waiting after the last kill, every one delivered; %d delivered twice with the same Message-ID",
		len(acked), len(rows), waiting, duplicates)
}

// TestTwoSendersOnOnePostgresSendEachMessageOnce runs two instances on one
// PostgreSQL database, each with its own writer and sender, delivering the
// same outbox at once: every message reaches the relay exactly once.
func TestTwoSendersOnOnePostgresSendEachMessageOnce(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	mp := mailpittest.Start(t, mailpittest.Options{})
	ctx := context.Background()
	skey, _ := audit.GenerateKey(origin)
	var senders []*mail.Sender
	var first *env
	for i := range 2 {
		db, err := store.Open(ctx, "postgres", dsn, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := audit.Open(ctx, db, audit.Options{SigningKey: skey, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		if i == 0 {
			o, _ := mail.NewOutbox(from)
			first = &env{db: db, log: l, outbox: o}
		}
		s, err := mail.NewSender(l, mail.SenderOptions{From: from, Transport: relay(t, mp, "smtp", "", ""), Logger: quiet, Batch: 3})
		if err != nil {
			t.Fatal(err)
		}
		senders = append(senders, s)
	}
	const total = 60
	for i := range total {
		first.queue(t, plain("dominique@exemple.fr", fmt.Sprintf("Message %02d", i)))
	}

	var wg sync.WaitGroup
	sent := make([]int, len(senders))
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r, err := s.DeliverDue(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				sent[i] += r.Sent
				if r.Claimed == 0 && s.Pending() == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()

	got := mp.WaitMessages(t, total, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	got = mp.Messages(t)
	ids := map[string]int{}
	for _, m := range got {
		ids[m.MessageID]++
	}
	if len(got) != total || len(ids) != total {
		t.Fatalf("the relay got %d messages, %d distinct, want %d each once", len(got), len(ids), total)
	}
	for _, q := range first.rows(t) {
		if q.Attempts != 1 || q.SentAt.IsZero() {
			t.Errorf("%s: %d attempts, sent %v: want one attempt", q.Subject, q.Attempts, q.SentAt)
		}
	}
	t.Logf("the two senders sent %v", sent)
}
