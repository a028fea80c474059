// Command aidants-bench measures the performance targets of SPEC §10 in
// one run and writes the results, with a description of the machine, to
// docs/BENCHMARKS.md. Figures are ratios against baselines measured in the
// same run wherever a baseline exists; nothing here asserts a time.
//
// Large fixtures (logs of 1 and 10 million events) are generated once
// through the real writer and kept in -cache, so that later runs only
// measure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

type options struct {
	out      string
	cache    string
	sizes    []int64
	seconds  time.Duration
	writers  []int
	postgres bool
	rounds   int

	flows       bool
	flowClients []int
	mailClients int
	writes      bool
}

func main() {
	var o options
	var sizes, writers string
	flag.StringVar(&o.out, "out", "docs/BENCHMARKS.md", "where to write the report")
	flag.StringVar(&o.cache, "cache", ".cache/bench", "directory for the large fixtures (kept between runs)")
	flag.StringVar(&sizes, "sizes", "1000000,10000000", "log sizes for proofs, verify and start-up (\"\" for none)")
	flag.StringVar(&writers, "writers", "1,16,64,256", "concurrent writers")
	flag.DurationVar(&o.seconds, "duration", 3*time.Second, "how long each write measurement runs")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of each write measurement, interleaved; medians are reported")
	flag.BoolVar(&o.postgres, "postgres", true, "also measure writes on PostgreSQL (needs initdb)")
	flag.BoolVar(&o.writes, "writes", true, "measure durable writes")
	flag.BoolVar(&o.flows, "flows", true, "measure act-on-behalf flows over loopback HTTP (builds and runs the aidants binary)")
	var flowClients string
	flag.StringVar(&flowClients, "flow-clients", "32,128", "concurrent clients for the act-on-behalf flows")
	flag.IntVar(&o.mailClients, "mail-clients", 32, "concurrent clients for the flows with mail against without (0: skip)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run")
	flag.Parse()
	for _, s := range strings.Split(sizes, ",") {
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n < 1 {
			fatal(fmt.Errorf("-sizes: %q", s))
		}
		o.sizes = append(o.sizes, n)
	}
	for _, s := range strings.Split(writers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatal(fmt.Errorf("-writers: %q", s))
		}
		o.writers = append(o.writers, n)
	}
	for _, s := range strings.Split(flowClients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatal(fmt.Errorf("-flow-clients: %q", s))
		}
		o.flowClients = append(o.flowClients, n)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := os.MkdirAll(o.cache, 0o755); err != nil {
		fatal(err)
	}
	var err error
	if benchKey, err = loadBenchKey(o.cache); err != nil {
		fatal(err)
	}
	r := &report{started: time.Now(), machine: describeMachine(o.cache), opts: o}
	if err := runAll(ctx, o, r); err != nil {
		fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(o.out, []byte(r.markdown()), 0o644); err != nil {
		fatal(err)
	}
	fmt.Printf("wrote %s\n", o.out)
	pprof.StopCPUProfile()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "aidants-bench:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func runAll(ctx context.Context, o options, r *report) error {
	if o.flows {
		if err := benchFlows(ctx, o, r); err != nil {
			return err
		}
	}
	if o.writes {
		if err := benchWrites(ctx, o, r); err != nil {
			return err
		}
		if err := benchWitnessing(ctx, o, r); err != nil {
			return err
		}
	}
	for _, n := range o.sizes {
		path, err := fixture(ctx, o.cache, n)
		if err != nil {
			return err
		}
		if err := benchLog(ctx, path, n, r); err != nil {
			return err
		}
	}
	return nil
}
