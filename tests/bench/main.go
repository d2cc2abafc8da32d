// Command bench measures eddy's end-to-end throughput beside the raw limit,
// in one run, on the same broker and data:
//
//   - raw:    a bare sarama consumer that only counts the messages of every
//     partition (the ceiling for anything reading through sarama);
//   - discard: eddy's bounded iot-work job with the discard sink (processing
//     only, like Nexmark's blackhole sink);
//   - sqlite: the same job writing every output table to SQLite;
//   - mysql: the same job writing every output table to MariaDB/MySQL
//     (the server of EDDY_MYSQL_DSN, default eddy:eddy@tcp(127.0.0.1:3306)/;
//     a fresh database per run, dropped after it);
//   - sqlite-sink, mysql-sink: the store limit through the sink: the rows
//     the job writes for the dataset (captured once per invocation from a
//     run of the job into a recording sink), written with the sink's
//     WriteEpoch and Flush, in the job's batches and order, with no job
//     around it (the sink's cost and the store's);
//   - sqlite-raw, mysql-raw: the store's own limit: the same rows in a
//     bare database/sql loop of the sink's multi-row upserts, with its
//     schema and DSN, into a fresh file or database (the store's and the
//     driver's cost only; the values are prepared before the clock
//     starts). Options after a slash, joined by '+', change the loop or
//     the schema, e.g. sqlite-raw/ms+page=16384: ms (INTEGER Unix ms
//     times), msgen (ms in columns <name>_ms, the text columns VIRTUAL
//     generated from them), dict (a devices table and integer device
//     keys), page=N (page_size of the fresh file), rows=N (rows per
//     statement; default --batch-rows), tx=N (rows per transaction;
//     default the rows of the job's average flush, at most 16 ×
//     --batch-rows), noprep (the statement text executed each time
//     instead of prepared once), insert (plain INSERT, no upsert);
//     mysql-raw takes rows, tx, noprep and insert;
//   - discard+checkpoint: the discard job with checkpoints every
//     --checkpoint-interval (default 5s) to file:// storage in a temp
//     directory, keyed state in pebble behind a cache of --cache-devices
//     device states per partition.
//
// Each is run --runs times, the runs interleaved (run 1 of every variant,
// then run 2 ...); the medians of events/s (the dataset's records over the
// run's time), the ratios to raw, to the sink-only variant and to the
// first raw variant of the store (vs sink, vs store), the CPU seconds of
// this process per run (getrusage; the job variants include the
// in-process broker, the store-limit variants count from the end of their
// preparation) and, for the mysql variants, the CPU seconds of the local
// mariadbd per run (/proc/<pid>/stat: every client of that server counts)
// are printed.
// --conns and --batch-bytes set sinks.Config.Conns and BatchBytes of the
// mysql variant.
//
// With --latency, the job then runs unbounded while the dataset is
// replayed into an empty topic at a steady --rate records/s (default: half
// the mysql variant's median of this run) for --latency-duration; every
// --probe-every-th record is timed from its hand-over to the producer
// until its row is visible in the sink, and p50, p99, p99.9 and max are
// printed for each run and as medians of --latency-runs runs. The job runs
// as --latency-mode says (comma-separated): run (in this process, like
// eddy run, into a fresh MySQL database polled by primary key every 2 ms),
// cluster (three eddy node processes, the binary built once, the job
// submitted through the Raft API, into MySQL, polled the same way) or
// kafka (in this process into the transactional Kafka sink, once per
// checkpoint interval of --latency-intervals, read by a read_committed
// consumer). --flush-interval is sink_options.flush_interval of run and
// cluster. --flush-on-idle and --batch-linger set
// sink_options.flush_on_idle and batch_linger of every job.
//
// With discard+checkpoint, the per-partition checkpoint durations (barrier to
// ack, and the processing pause at the barrier) of all its runs are printed
// as percentiles, and one more run restores the largest checkpoint taken and
// reports the per-partition restore times. With --cpuprofile, one extra run
// of the last variant is profiled.
//
// --devices N --per-device M replaces the dataset by a synthetic one: N
// devices, M readings each, 30 s apart, all above the work threshold, so
// every device keeps an open window and an open work period: N devices of
// open state per node.
//
//	go run ./tests/bench [--runs 5] [--data FILE --delimiter C --map ...]
//	go run ./tests/bench --variants discard,discard+checkpoint --devices 100000 --per-device 12 --runs 3
//	go run ./tests/bench --variants raw,sqlite,sqlite-sink,sqlite-raw,sqlite-raw/ms --runs 3
//	go run ./tests/bench --variants raw,mysql,mysql-sink,mysql-raw --runs 3
//	go run ./tests/bench --variants raw,mysql --runs 3 --latency --latency-runs 3 --latency-mode run,cluster,kafka
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/eddy-iot/eddy/actors"
	"github.com/eddy-iot/eddy/actors/dataset"
	"github.com/eddy-iot/eddy/actors/devbroker"
	"github.com/eddy-iot/eddy/sinks"
	"github.com/eddy-iot/eddy/sinks/kafkaconf"
	"github.com/eddy-iot/eddy/tests/bench/synth"
)

// The --batch-rows, --latency, --flush-on-idle and --batch-linger flags.
var (
	batchRows   int
	latency     bool
	flushOnIdle bool
	batchLinger time.Duration
)

// jobKnobs sets the --flush-on-idle and --batch-linger knobs on cfg.
func jobKnobs(cfg *actors.Config) {
	cfg.SinkFlushOnIdle = flushOnIdle
	cfg.BatchLinger = batchLinger
}

func main() {
	var (
		runs       = flag.Int("runs", 5, "runs of each variant; medians are reported")
		data       = flag.String("data", dataset.EmbeddedAberdeen, "dataset (default: the embedded Aberdeen data)")
		partitions = flag.Int("partitions", 12, "partitions of the source topic")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of one extra run of the last variant to this file")
		variants   = flag.String("variants", "raw,discard,sqlite", "comma-separated subset of raw,discard,sqlite,sqlite-sink,sqlite-raw[/OPTS],mysql,mysql-sink,mysql-raw[/OPTS],discard+checkpoint (OPTS of a raw variant, joined by +: ms, dict, page=N, rows=N, tx=N, noprep, insert)")
	)
	flag.IntVar(&synthDevices, "devices", 0, "synthetic dataset: this many devices (0 = use --data)")
	flag.IntVar(&synthPerDevice, "per-device", 12, "synthetic dataset: readings per device, 30 s apart")
	flag.DurationVar(&ckptInterval, "checkpoint-interval", 5*time.Second, "checkpoint interval of discard+checkpoint and of the cluster latency mode")
	flag.IntVar(&batchRows, "batch-rows", sinks.DefaultConfig().BatchRows, "sinks.Config.BatchRows of the sqlite and mysql variants (rows per flush and per INSERT statement)")
	flag.IntVar(&mysqlConns, "conns", sinks.DefaultConfig().Conns, "sinks.Config.Conns of the mysql variant (parallel connections of a flush)")
	flag.IntVar(&mysqlBatchBytes, "batch-bytes", sinks.DefaultConfig().BatchBytes, "sinks.Config.BatchBytes of the mysql variant (bytes per INSERT statement)")
	flag.StringVar(&mysqlDSN, "mysql-dsn", envOr("EDDY_MYSQL_DSN", "eddy:eddy@tcp(127.0.0.1:3306)/"), "server of the mysql variant (go-sql-driver DSN; its database name is ignored)")
	flag.BoolVar(&latency, "latency", false, "after the variants, run the latency benchmark into mysql (see --rate)")
	flag.Float64Var(&latRate, "rate", 0, "latency benchmark: records/s of the steady replay (0: half the median of the mysql variant of this run)")
	flag.DurationVar(&latDuration, "latency-duration", 20*time.Second, "latency benchmark: how long the steady replay runs")
	flag.IntVar(&latEvery, "probe-every", 50, "latency benchmark: every N-th record is a probe whose arrival is timed")
	flag.StringVar(&latModes, "latency-mode", modeRun, "latency benchmark: comma-separated modes: run (the job in this process, like eddy run, into mysql), cluster (3 eddy node processes, the job submitted through the Raft API, into mysql; checkpoints every --checkpoint-interval), kafka (the job in this process into the transactional Kafka sink, read read_committed, at each --latency-intervals)")
	flag.IntVar(&latRuns, "latency-runs", 1, "latency benchmark: runs of each mode (and interval); medians of their percentiles are printed")
	flag.StringVar(&latIntervals, "latency-intervals", "1s,5s", "latency benchmark, kafka mode: comma-separated checkpoint intervals")
	flag.DurationVar(&latFlush, "flush-interval", actors.DefaultSinkFlushInterval, "latency benchmark, run and cluster modes: sink_options.flush_interval (how often buffered rows are written)")
	flag.BoolVar(&flushOnIdle, "flush-on-idle", actors.DefaultConfig().SinkFlushOnIdle, "every job: sink_options.flush_on_idle (flush the plain sinks as soon as a partition is caught up)")
	flag.DurationVar(&batchLinger, "batch-linger", actors.DefaultConfig().BatchLinger, "every job: batch_linger (how long a source reader waits to fill a batch)")
	flag.IntVar(&cacheDevices, "cache-devices", actors.DefaultCacheDevices, "device states cached in memory per partition (discard+checkpoint)")
	flag.Parse()
	if err := run(*runs, *data, *partitions, *cpuprofile, *variants); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(runs int, data string, partitions int, cpuprofile, variants string) error {
	ctx := context.Background()
	bcfg := devbroker.DefaultConfig()
	bcfg.Listen = "127.0.0.1:0"
	bcfg.Partitions = partitions
	broker, err := devbroker.Start(bcfg)
	if err != nil {
		return err
	}
	defer broker.Close()
	tmp, err := os.MkdirTemp("", "eddy-bench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if synthDevices > 0 {
		data = filepath.Join(tmp, fmt.Sprintf("synthetic-%d-devices.ndjson", synthDevices))
		if err := synth.Write(data, synthDevices, synthPerDevice); err != nil {
			return err
		}
	}
	r, err := dataset.Open(data, dataset.Options{})
	if err != nil {
		return err
	}
	rs, err := dataset.Replay(ctx, broker.Addrs(), "iot-topic", r, dataset.ReplayOptions{})
	r.Close()
	if err != nil {
		return err
	}
	n := rs.Produced
	fmt.Printf("eddy bench: %d records of %s in %d partitions, GOMAXPROCS=%d, %d runs each\n",
		n, filepath.Base(data), partitions, runtime.GOMAXPROCS(0), runs)

	want := map[string]bool{}
	var rawVariants []string // sqlite-raw[/opts] and mysql-raw[/opts], in order
	for _, v := range splitComma(variants) {
		want[v] = true
		if strings.HasPrefix(v, "sqlite-raw") || strings.HasPrefix(v, "mysql-raw") {
			rawVariants = append(rawVariants, v)
		}
	}
	var rows *jobRows
	if want["sqlite-sink"] || want["mysql-sink"] || len(rawVariants) > 0 {
		if rows, err = captureJobRows(ctx, broker.Addrs(), n); err != nil {
			return err
		}
		fmt.Printf("the job's rows, captured once: %d readings, %d windows, %d work periods, %d late, %d dead letters in %d batches, %d flushes\n",
			rows.counts[0], rows.counts[1], rows.counts[2], rows.counts[3], rows.counts[4], len(rows.batches), rows.flushes)
	}

	type variant struct {
		name string
		// store names the store of the variants that write to one
		// (sqlite, mysql): their ratios to the store's own limit.
		store string
		fn    func(i int) (time.Duration, error)
	}
	var vs []variant
	if want["raw"] {
		vs = append(vs, variant{"raw sarama consumer", "", func(int) (time.Duration, error) { return rawConsume(broker.Addrs(), n) }})
	}
	if want["discard"] {
		vs = append(vs, variant{"eddy → discard", "", func(int) (time.Duration, error) {
			return runJob(ctx, broker.Addrs(), sinks.NewDiscard(), n)
		}})
	}
	var ck checkpointStats
	if want["discard+checkpoint"] {
		vs = append(vs, variant{"eddy → discard + ckpt", "", func(i int) (time.Duration, error) {
			store := "file://" + filepath.Join(tmp, fmt.Sprintf("ckpt-%d", i))
			d, err := runJobWith(ctx, broker.Addrs(), sinks.NewDiscard(), n, func(c *actors.Config) {
				c.Checkpoint.Storage = store
				c.Checkpoint.Interval = ckptInterval
				c.Checkpoint.Retain = 1 << 30 // keep every manifest for the statistics
				c.State.Dir = filepath.Join(tmp, "state")
				c.State.CacheDevices = cacheDevices
			}, nil)
			if err == nil {
				err = ck.add(ctx, store)
			}
			return d, err
		}})
	}
	sqliteCfg := func() sinks.Config {
		scfg := sinks.DefaultConfig()
		scfg.BatchRows = batchRows
		return scfg
	}
	if want["sqlite"] {
		vs = append(vs, variant{"eddy → sqlite", "sqlite", func(i int) (time.Duration, error) {
			s, err := sinks.NewSQLite(filepath.Join(tmp, fmt.Sprintf("bench-%d.db", i)), sqliteCfg(), nil)
			if err != nil {
				return 0, err
			}
			return runJob(ctx, broker.Addrs(), s, n)
		}})
	}
	if want["sqlite-sink"] {
		vs = append(vs, variant{"sqlite sink only", "sqlite", func(i int) (time.Duration, error) {
			s, err := sinks.NewSQLite(filepath.Join(tmp, fmt.Sprintf("sink-%d.db", i)), sqliteCfg(), nil)
			if err != nil {
				return 0, err
			}
			return sinkOnly(ctx, s, rows)
		}})
	}
	if want["mysql"] {
		vs = append(vs, variant{"eddy → mysql", "mysql", func(i int) (time.Duration, error) {
			return runMySQL(ctx, broker.Addrs(), n, i)
		}})
	}
	if want["mysql-sink"] {
		vs = append(vs, variant{"mysql sink only", "mysql", func(i int) (time.Duration, error) {
			return mysqlSinkOnly(ctx, rows, i)
		}})
	}
	for k, rv := range rawVariants {
		base, opts, _ := strings.Cut(rv, "/")
		o, err := parseRawOpts(opts)
		if err != nil {
			return fmt.Errorf("variant %s: %w", rv, err)
		}
		switch base {
		case "sqlite-raw":
			vs = append(vs, variant{rv, "sqlite", func(i int) (time.Duration, error) {
				return sqliteRaw(ctx, filepath.Join(tmp, fmt.Sprintf("raw-%d-%d.db", k, i)), rows, o)
			}})
		case "mysql-raw":
			vs = append(vs, variant{rv, "mysql", func(i int) (time.Duration, error) {
				return mysqlRaw(ctx, rows, k*1000+i, o)
			}})
		default:
			return fmt.Errorf("unknown variant %q", rv)
		}
	}
	// Runs are interleaved (run 1 of every variant, then run 2, ...), so
	// that a machine whose speed drifts affects every variant alike.
	// CPU is this process's user+system time per run (for the job
	// variants it includes the in-process broker); db CPU is that of the
	// local mariadbd per run, for the mysql variants.
	rates := make([][]float64, len(vs))
	cpus := make([][]float64, len(vs))
	dbCPUs := make([][]float64, len(vs))
	for i := 0; i < runs; i++ {
		for vi, v := range vs {
			runtime.GC()
			db0, haveDB := mariadbCPU()
			cpu0 := processCPU()
			timedStart.set = false
			d, err := v.fn(i)
			cpu := processCPU() - cpu0
			db1, _ := mariadbCPU()
			if timedStart.set {
				cpu = processCPU() - timedStart.cpu
				db0 = timedStart.db
			}
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			rates[vi] = append(rates[vi], float64(n)/d.Seconds())
			cpus[vi] = append(cpus[vi], cpu.Seconds())
			dbNote := ""
			if v.store == "mysql" && haveDB {
				dbCPUs[vi] = append(dbCPUs[vi], (db1 - db0).Seconds())
				dbNote = fmt.Sprintf(", mariadbd %.2f s CPU", (db1 - db0).Seconds())
			}
			fmt.Printf("  %-28s run %d: %8.0f events/s (%s, %.2f s CPU%s)\n", v.name, i+1, rates[vi][i], d.Round(time.Millisecond), cpu.Seconds(), dbNote)
		}
	}
	medians := map[string]float64{}
	for vi, v := range vs {
		medians[v.name] = median(rates[vi])
	}
	fmt.Println()
	fmt.Printf("%-28s %12s %13s %7s %8s %8s %7s %7s\n", "variant", "median ev/s", "ev/s per core", "vs raw", "vs sink", "vs store", "CPU s", "db CPU s")
	raw := medians["raw sarama consumer"]
	// The store's own limit: the first sqlite-raw / mysql-raw variant
	// listed; the sink's: sqlite-sink / mysql-sink.
	storeRaw := map[string]float64{}
	for _, rv := range rawVariants {
		st, _, _ := strings.Cut(rv, "-")
		if _, ok := storeRaw[st]; !ok {
			storeRaw[st] = medians[rv]
		}
	}
	sinkOnlyMed := map[string]float64{"sqlite": medians["sqlite sink only"], "mysql": medians["mysql sink only"]}
	ratio := func(m, of float64) string {
		if of <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", m/of)
	}
	for vi, v := range vs {
		m := medians[v.name]
		vsSink, vsStore := "-", "-"
		if v.store != "" {
			vsSink, vsStore = ratio(m, sinkOnlyMed[v.store]), ratio(m, storeRaw[v.store])
		}
		db := "-"
		if len(dbCPUs[vi]) > 0 {
			db = fmt.Sprintf("%.2f", median(dbCPUs[vi]))
		}
		fmt.Printf("%-28s %12.0f %13.0f %7s %8s %8s %7.2f %7s\n", v.name, m, m/float64(runtime.GOMAXPROCS(0)),
			ratio(m, raw), vsSink, vsStore, median(cpus[vi]), db)
	}
	if len(ck.durations) > 0 {
		ck.print()
		if err := ck.restore(ctx, broker.Addrs(), n, tmp); err != nil {
			return err
		}
	}
	if latency {
		rate := latRate
		if rate <= 0 {
			if medians["eddy → mysql"] == 0 {
				return fmt.Errorf("--latency needs --rate or the mysql variant (its median sets the rate to half of it)")
			}
			rate = medians["eddy → mysql"] / 2
		}
		if err := runLatency(ctx, broker.Addrs(), data, tmp, partitions, rate, medians["eddy → mysql"]); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if cpuprofile != "" && len(vs) > 0 {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		last := vs[len(vs)-1]
		_, err = last.fn(runs)
		pprof.StopCPUProfile()
		if err != nil {
			return err
		}
		fmt.Printf("\nCPU profile of one more %q run: %s (go tool pprof -top %s)\n", last.name, cpuprofile, cpuprofile)
	}
	return nil
}

// runJob runs the bounded iot-work job into sink and checks it saw n records.
func runJob(ctx context.Context, brokers []string, sink sinks.Sink, n int64) (time.Duration, error) {
	return runJobWith(ctx, brokers, sink, n, nil, nil)
}

// runJobWith is runJob with a configuration hook and a logger (nil: none).
func runJobWith(ctx context.Context, brokers []string, sink sinks.Sink, n int64, conf func(*actors.Config), log *slog.Logger) (time.Duration, error) {
	defer sink.Close()
	if err := sink.Open(ctx); err != nil {
		return 0, err
	}
	cfg := actors.DefaultConfig()
	cfg.Source.Brokers = brokers
	cfg.Source.Bounded = true
	jobKnobs(&cfg)
	if conf != nil {
		conf(&cfg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	job, err := actors.NewJob(cfg, sink, nil, nil, log)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	sum, err := job.Run(ctx)
	if err == nil {
		err = sink.Close()
	}
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if sum.Received != n {
		return 0, fmt.Errorf("job received %d records, want %d", sum.Received, n)
	}
	return d, nil
}

// rawConsume reads every partition to its end with a bare sarama consumer
// that only counts messages: the raw limit.
func rawConsume(brokers []string, n int64) (time.Duration, error) {
	sc := kafkaconf.MustNew("", "", kafkaconf.Security{})
	sc.Consumer.Fetch.Default = 4 << 20
	sc.ChannelBufferSize = 8192
	start := time.Now()
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return 0, err
	}
	defer consumer.Close()
	parts, err := client.Partitions("iot-topic")
	if err != nil {
		return 0, err
	}
	var count atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(parts))
	for _, p := range parts {
		end, err := client.GetOffset("iot-topic", p, sarama.OffsetNewest)
		if err != nil {
			return 0, err
		}
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition("iot-topic", p, sarama.OffsetOldest)
		if err != nil {
			return 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.AsyncClose()
			for m := range pc.Messages() {
				count.Add(1)
				if m.Offset+1 >= end {
					return
				}
			}
			errs <- fmt.Errorf("partition %d closed early", p)
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	if count.Load() != n {
		return 0, fmt.Errorf("raw consumer counted %d, want %d", count.Load(), n)
	}
	return d, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func splitComma(s string) []string { return strings.Split(s, ",") }
