package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type report struct {
	started        time.Time
	machine        []string
	opts           options
	writes         []writeRow
	ceiling        writeResult
	rssAfterWrites int64
	logs           []logResult
	flows          []flowResult
	mail           *mailResult
	anonymous      *anonymousCost
	witness        *witnessResult
	notes          []string
}

// describeMachine says what the figures were measured on.
func describeMachine(dir string) []string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	kernel, _ := exec.Command("uname", "-sr").Output()
	fs := "unknown"
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) == nil {
		fs = map[int64]string{0xEF53: "ext4", 0x58465342: "xfs", 0x794c7630: "overlayfs", 0x01021994: "tmpfs", 0x9123683E: "btrfs"}[int64(st.Type)]
		if fs == "" {
			fs = fmt.Sprintf("0x%x", st.Type)
		}
	}
	small, large := fsyncLatency(dir, 4<<10), fsyncLatency(dir, 1<<20)
	return []string{
		fmt.Sprintf("CPU: %s, %d cores visible to Go (GOMAXPROCS %d)", cpu, runtime.NumCPU(), runtime.GOMAXPROCS(0)),
		fmt.Sprintf("Disk: write + fdatasync of 4 KiB p50 %s, of 1 MiB p50 %s (measured at the start of the run; on this virtual machine it varies by 2× or more over minutes)", ms(small), ms(large)),
		"Memory: " + mem,
		"OS: " + strings.TrimSpace(string(kernel)) + ", " + runtime.GOOS + "/" + runtime.GOARCH,
		"Go: " + runtime.Version(),
		"Disk holding the databases: " + fs,
	}
}

// peakRSS is the process's peak resident memory, in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "—"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

func num(f float64) string {
	s := strconv.FormatFloat(f, 'f', 0, 64)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// batchSize256 is the SQLite batched writer's writes per commit at 256
// writers.
func (r *report) batchSize256() float64 {
	for _, w := range r.writes {
		if strings.HasPrefix(w.engine, "SQLite") && w.writers == 256 {
			return float64(w.batched.writes) / float64(max(w.batched.batches, 1))
		}
	}
	return 0
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# Benchmarks")
	p("")
	p("Measured by `make bench` (`go run ./cmd/aidants-bench`) on %s, in one run of %s.",
		r.started.UTC().Format("2006-01-02 15:04 UTC"), time.Since(r.started).Round(time.Second))
	p("Ratios compare figures measured in the same run. Nothing here is asserted by a test: these are")
	p("measurements, to be read against the targets of SPEC §10.")
	p("")
	p("## Machine")
	p("")
	for _, m := range r.machine {
		p("- %s", m)
	}
	p("")
	p("## Durable audited writes")
	p("")
	p("Each write is one unit of work: it inserts a row (the state change) and appends one event")
	p("(`mandate.used`, ~330 bytes of canonical JSON with pseudonymous ids) in the same transaction.")
	p("")
	p("- *Batched* is the production writer: it takes whatever is queued, runs each unit in its own savepoint,")
	p("  computes the batch's Merkle hashes, signs one checkpoint and commits once.")
	p("- *Naive* is the baseline the issue names, one transaction per write: every writer runs each write in")
	p("  its own transaction on its own connection, as an application without a group-committing writer does;")
	p("  writers queue on the database's write lock (SQLite's busy handler, PostgreSQL's lock on the log head).")
	p("- *Batches of one* is a stricter baseline: the production writer with batches of one, so writers queue")
	p("  in memory behind one connection and every write pays only its own commit, fsync and signature.")
	p("")
	p("Each configuration runs %d rounds of %s, interleaved with the others (this virtual machine's disk drifts by", r.opts.rounds, r.opts.seconds)
	p("2× or more over minutes); the table shows each configuration's median, all in this run.")
	p("")
	p("| engine | writers | batched writes/s | p50 latency | p99 latency | writes per commit | naive writes/s | batched ÷ naive | batches of one, writes/s | batched ÷ batches of one |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, w := range r.writes {
		per := float64(w.batched.writes) / float64(max(w.batched.batches, 1))
		p("| %s | %d | %s | %s | %s | %.0f | %s | **%.1f×** | %s | %.1f× |", w.engine, w.writers, num(w.batched.rate()), ms(w.batched.p50),
			ms(w.batched.p99), per, num(w.own.rate()), w.batched.rate()/w.own.rate(), num(w.naive.rate()), w.batched.rate()/w.naive.rate())
	}
	p("")
	p("CPU ceiling (SQLite): the same rows inserted in bulk — 1,000 state changes and events per")
	p("transaction, one writer, `synchronous=NORMAL` — run at **%s writes/s**.", num(r.ceiling.rate()))
	p("")
	var sqlite256, own256, one256 float64
	for _, w := range r.writes {
		if strings.HasPrefix(w.engine, "SQLite") && w.writers == 256 {
			sqlite256, own256, one256 = w.batched.rate(), w.own.rate(), w.naive.rate()
		}
	}
	if sqlite256 > 0 {
		p("| target (SPEC §10, issue 3) | measured | verdict |")
		p("|---|---|---|")
		p("| ≥ 30,000 durable writes/s at 256 writers (SQLite, FULL) | %s/s | %s |", num(sqlite256), verdict(sqlite256 >= 30000))
		p("| ≥ 20× the naive baseline (one transaction per write), same run | %.1f× | %s |", sqlite256/own256, verdict(sqlite256/own256 >= 20))
		p("| (stricter, not a target) ÷ batches of one, same run | %.1f× | — |", sqlite256/one256)
		p("| ≥ 0.85× the CPU ceiling, same run (raised from 0.5× in SPEC §10) | %.2f× | %s |", sqlite256/r.ceiling.rate(), verdict(sqlite256/r.ceiling.rate() >= 0.85))
		p("")
		if sqlite256 < 30000 {
			p("**Why the absolute target is missed here.** The same rows inserted in bulk, with no fsync per commit, no")
			p("savepoint per unit, no Merkle hashing and no signature, run at %s writes/s on this machine: the ceiling", num(r.ceiling.rate()))
			p("itself is only %.2f× the target, so reaching 30,000 would take %.2f× of it, where the batched writer gets", r.ceiling.rate()/30000, 30000/r.ceiling.rate())
			p("%.2f× (each batch of ~%.0f writes still pays one fsync of the WAL, the checkpoint's signature, and per write a", sqlite256/r.ceiling.rate(), r.batchSize256())
			p("savepoint and its share of the tree's hashes). The two cores are the limit, not the design: the ratios to both")
			p("baselines are met, and the absolute figure moves by a quarter or more between runs of the same code on this")
			p("virtual machine (its disk and its neighbours).")
			p("")
		}
	}
	p("Peak resident memory of the benchmark process after the write measurements: %.0f MB.", float64(r.rssAfterWrites)/(1<<20))
	p("")
	if len(r.logs) > 0 {
		p("## Proofs, verification and start-up on large logs")
		p("")
		p("Logs generated once through the real writer (cached in `%s`). Proof latencies are over 20,000", r.opts.cache)
		p("random requests each, after 20,000 warm-up requests (as on a serving instance, whose cache of the high tree")
		p("levels is full), measured as function calls (the HTTP handler adds only JSON encoding).")
		p("Start-up is opening the database, checking migrations and starting the writer (which reads only")
		p("the log head and the right edge of the tree: no scan). After start-up, and before the proofs and the")
		p("verification, the database file is read through once (the *page cache* column), so that it sits in the")
		p("kernel's page cache as on a serving instance with memory to spare: otherwise the figures depend on what this")
		p("machine happened to do before (a cold 10 M-event file gave an inclusion p99 of 3.5 ms and a verify rate of")
		p("295,000 events/s in an earlier run of the same code).")
		p("")
		p("| events | database | start-up | page cache | inclusion p50 | inclusion p99 | consistency p50 | consistency p99 |")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, l := range r.logs {
			p("| %s | %.1f GB | %s | %.1f s | %s | %s | %s | %s |", num(float64(l.size)), float64(l.fileBytes)/1e9,
				ms(l.startup), l.warm.Seconds(), ms(l.incP50), ms(l.incP99), ms(l.conP50), ms(l.conP99))
		}
		p("")
		p("`audit verify` recomputes every entry (SHA-256 of salt and body), leaf, stored hash, checkpoint and root, and")
		p("— SPEC §6.1 — every queryable column of every event from its body (type, time, organisation, aidant, person,")
		p("mandate, service, démarches). The baseline is the same verification without the columns, in the same run; each")
		p("figure is the faster of two runs, interleaved.")
		p("")
		p("| events | verify, every column checked | rate | bodies only (baseline) | rate | columns ÷ baseline |")
		p("|---:|---:|---:|---:|---:|---:|")
		for _, l := range r.logs {
			p("| %s | %.1f s | **%s events/s** | %.1f s | %s events/s | %.2f× |", num(float64(l.size)), l.verify.Seconds(),
				num(float64(l.size)/l.verify.Seconds()), l.verifyBodies.Seconds(), num(float64(l.size)/l.verifyBodies.Seconds()),
				l.verifyBodies.Seconds()/l.verify.Seconds())
		}
		p("")
		p("Tiles (c2sp.org/tlog-tiles) served over loopback HTTP by the calls `/audit/tile/` makes, random full tiles")
		p("among all of the log's, 16 keep-alive clients on the same two cores, 3 s each:")
		p("")
		p("| events | full tiles in the log | level-0 hash tiles/s (256 hashes, 8 KiB) | entry bundles/s (256 entries) |")
		p("|---:|---:|---:|---:|")
		for _, l := range r.logs {
			p("| %s | %s | %s | %s |", num(float64(l.size)), num(float64(l.hashTiles.tiles)), num(l.hashTiles.rate), num(l.entryTiles.rate))
		}
		p("")
		p("A person's history (their newest events, newest first, as \"Ce qui a été fait pour moi\" shows them) for a person")
		p("with one event in a hundred of the log, through the `(usager_id, idx)` index, over 2,000 requests after 2,000 warm-up:")
		p("")
		p("| events in the log | the person's events | page query (newest 20) p50 | p99 | last 100 p50 | p99 |")
		p("|---:|---:|---:|---:|---:|---:|")
		for _, l := range r.logs {
			p("| %s | %s | %s | %s | %s | %s |", num(float64(l.size)), num(float64(l.historyEvents)), ms(l.pageP50), ms(l.pageP99), ms(l.historyP50), ms(l.historyP99))
		}
		p("")
		last := r.logs[len(r.logs)-1]
		p("| target (SPEC §10), at %s events | measured | verdict |", num(float64(last.size)))
		p("|---|---|---|")
		p("| inclusion proof p99 < 1 ms | %s | %s |", ms(last.incP99), verdict(last.incP99 < time.Millisecond))
		rate, ratio := float64(last.size)/last.verify.Seconds(), last.verifyBodies.Seconds()/last.verify.Seconds()
		p("| full `audit verify`, every column checked, ≥ 500,000 events/s (else ≥ 0.8× bodies only) | %s events/s, %.2f× | %s |", num(rate), ratio,
			verdict(rate >= 500000 || ratio >= 0.8))
		for _, l := range r.logs {
			if l.size == 1000000 {
				p("| full tiles served at 1 M events ≥ 20,000/s | %s hash tiles/s, %s entry bundles/s | %s |", num(l.hashTiles.rate), num(l.entryTiles.rate),
					verdict(l.hashTiles.rate >= 20000))
			}
		}
		p("| start-up < 1 s | %s | %s |", ms(last.startup), verdict(last.startup < time.Second))
		p("| a person's last 100 events p99 < 10 ms | %s | %s |", ms(last.historyP99), verdict(last.historyP99 < 10*time.Millisecond))
		p("")
		if rate < 500000 {
			p("**Why verify is below 500,000 events/s here.** It reads every event (salt ‖ body and its columns packed by")
			p("the query) and every stored hash on reading goroutines, a third recomputes entries, leaves and columns, and the")
			p("main one the tree: on two cores it is bound by SQLite's row decoding and SHA-256, and its rate moves by a quarter")
			p("between runs of the same code on this virtual machine (%s events/s here, %.2f× the bodies-only baseline).", num(rate), ratio)
			p("")
		}
	}
	if w := r.witness; w != nil {
		p("## Witnessing (SPEC §6.1)")
		p("")
		p("The same 256 writers on SQLite (`synchronous=FULL`), %s per run, %d rounds interleaved, medians: without", max(r.opts.seconds, 8*time.Second), r.opts.rounds)
		p("witnesses, and with the witnessing service of `serve` sending the newest checkpoint every %v (the default", w.interval)
		p("`witness_interval`) to two local `litewitness` v0.6.1 processes (each with its `ssh-agent`) on the same two")
		p("cores, with a quorum of two. Each run is a new log registered with the witnesses under its own origin.")
		p("")
		p("| writes/s without witnesses | with two witnesses | with ÷ without | checkpoints witnessed | refused | failed |")
		p("|---:|---:|---:|---:|---:|---:|")
		p("| %s | %s | **%.2f×** | %d | %d | %d |", num(w.without.rate()), num(w.with.rate()), w.with.rate()/w.without.rate(), w.witnessed, w.refused, w.failed)
		p("")
		p("From a write's commit to the storing of the first checkpoint that covers it with both cosignatures, over")
		p("%s writes: **p50 %s, p99 %s** (the interval, plus a consistency proof and two round trips to the witnesses).", num(float64(w.delays)), ms(w.delayP50), ms(w.delayP99))
		p("")
		p("| target (SPEC §10) | measured | verdict |")
		p("|---|---|---|")
		p("| writes with two witnesses ≥ 0.95× without, same run | %.2f× | %s |", w.with.rate()/w.without.rate(), verdict(w.with.rate()/w.without.rate() >= 0.95))
		p("")
	}
	if len(r.flows) > 0 {
		p("## Acting on behalf: complete flows over loopback HTTP")
		p("")
		p("The service built and started as its own process (`aidants serve --dev`, SQLite `synchronous=FULL`, request")
		p("logs on), and concurrent clients on the same two cores, each an aidant's browser with its own session and a")
		p("public service registered with `private_key_jwt`. One flow is: `GET /oidc/authorize` → the chooser page →")
		p("`POST /agir` (the choice among three persons with a mandate: `mandate.used` journaled) → `POST /oidc/token`")
		p("with a fresh client assertion (`token.issued` journaled; ID token and access token signed ES256) →")
		p("`GET /oidc/userinfo`: five HTTP requests and two durable commits (the code with the record that the request")
		p("was answered, then the exchange; now and then the session's touch). The pending request itself travels")
		p("sealed in the chooser's page: the anonymous `GET /oidc/authorize` writes nothing. The clients do not verify the tokens' signatures (the provider's")
		p("work is what is measured; they still take CPU from it). The baseline, in the same run with the same clients, is")
		p("`GET /healthz`. %d rounds of %s each, interleaved with the baseline; medians.", r.opts.rounds, r.opts.seconds)
		p("")
		p("| clients | flows/s | flow p50 | flow p99 | audit units per commit | `/healthz` requests/s | a flow costs | server peak RSS |")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|")
		best := r.flows[0]
		for _, f := range r.flows {
			p("| %d | %s | %s | %s | %.1f | %s | %.0f round trips | %.0f MB |", f.clients, num(f.rate()), ms(f.p50), ms(f.p99),
				f.writer.units/max(f.writer.batches, 1), num(f.baseline), f.baseline/f.rate(), float64(f.serverRSS)/(1<<20))
			if f.rate() > best.rate() {
				best = f
			}
		}
		p("")
		p("| target (SPEC §10) | measured | verdict |")
		p("|---|---|---|")
		p("| ≥ 1,000 complete flows/s on 2 cores | %s/s (%d clients) | %s |", num(best.rate()), best.clients, verdict(best.rate() >= 1000))
		last := r.flows[len(r.flows)-1]
		p("| resident memory while serving < 200 MB | %.0f MB | %s |", float64(last.serverRSS)/(1<<20), verdict(last.serverRSS < 200<<20))
		p("")
		if best.rate() < 1000 {
			p("**Why the flows target is missed here.** At 128 clients both cores are busy: the server takes about 1.5 of")
			p("them and the clients the rest. A profile of the server under this load (perf and pprof) shows about a third of")
			p("its time in the kernel — network system calls and context switches, which are dear on this paravirtualised")
			p("machine — a quarter in the Go runtime (scheduling, garbage collection), and the rest spread over SQLite reads")
			p("(the session, the chooser's mandates, the code and token rows), two ECDSA signatures and two verifications,")
			p("the chooser's page and the five requests' HTTP handling; the audit writer itself is never the limit at 128")
			p("clients (%.0f units per commit). At 32 clients the flows wait on the two durable commits each needs instead.", best.writer.units/max(best.writer.batches, 1))
			p("What would move it: fewer queries per request, and the load generated from another machine.")
			p("")
		}
	}
	if m := r.mail; m != nil {
		ratio := m.with.rate() / m.without.rate()
		p("## Acting on behalf with the person told by email")
		p("")
		p("Two servers built from the same binary, each with its own data and the same three mandates: one sends its")
		p("messages to a local mailpit over SMTP (`AIDANTS_SMTP_URL=smtp://…`), the other has mail off")
		p("(`AIDANTS_SMTP_URL=none`). The same flows as above with %d clients, one round on each in turn (which goes first alternates), %d rounds; medians.", m.with.clients, r.opts.rounds)
		p("Each action queues its message in the unit that journals it (the first of the hour for a person) or records")
		p("it for the hour's grouped message; the sender delivers in the background. mailpit received %d messages.", m.sent)
		p("")
		p("| | flows/s | flow p50 | flow p99 |")
		p("|---|---:|---:|---:|")
		p("| with mail | %s | %s | %s |", num(m.with.rate()), ms(m.with.p50), ms(m.with.p99))
		p("| without mail | %s | %s | %s |", num(m.without.rate()), ms(m.without.p50), ms(m.without.p99))
		p("")
		p("| target (issue 15) | measured | verdict |")
		p("|---|---|---|")
		p("| flows with mail ≥ 0.9× without, same run | %.2f× | %s |", ratio, verdict(ratio >= 0.9))
		p("")
	}
	if a := r.anonymous; a != nil {
		p("## What an anonymous visitor costs the journal's writer")
		p("")
		p("Before the flows, %d anonymous browsers each open `GET /connexion/aidant` and %d services' browsers each", a.visits, a.visits)
		p("`GET /oidc/authorize` with a valid request, every redirect followed (to the development identity provider's")
		p("page, to the page that asks the visitor to sign in). The writer's unit counter (`aidants_audit_units_total`) is read")
		p("before and after: nothing signed in, so nothing may be written (SPEC §11; issue 13).")
		p("")
		p("| target | measured | verdict |")
		p("|---|---|---|")
		p("| anonymous sign-in starts and authorization requests cost no durable write | %.0f units for %d visits | %s |", a.units, 2*a.visits, verdict(a.units == 0))
		p("")
	}
	for _, n := range r.notes {
		p("%s", n)
		p("")
	}
	return b.String()
}

// fsyncLatency is the median time to append size bytes to a file and make
// them durable, the cost every commit pays once.
func fsyncLatency(dir string, size int) time.Duration {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, size)
	var d []time.Duration
	for range 50 {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0
		}
		d = append(d, time.Since(t))
	}
	sortDur(d)
	return d[len(d)/2]
}
