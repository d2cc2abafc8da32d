// Package oracle is the reference oracle of eddy's main job (iot-work): an
// independent, deliberately simple batch computation of what a bounded run of
// the job must leave in its sinks, and a comparator that diffs a sink against
// it.
//
// It is written from DESIGN.md ("The main job") alone and shares no code with
// operators/: when the two disagree, one of them is wrong, and the spec
// decides which.
//
// # What Compute does
//
//  1. Reads every record of a dataset file in file order: CSV with a header
//     line and a delimiter, or NDJSON (one JSON object per line); either may
//     be gzip-compressed (detected from the magic bytes). A CSV row whose
//     column count differs from the header's is skipped, as eddy's replayer
//     skips it: it is never sent. A blank NDJSON line is skipped too.
//  2. Assigns every sent record its Kafka partition the way sarama's default
//     hash partitioner does (FNV-1a 32 of the key, as int32, modulo the
//     partition count, negated when negative; key = the pboxid text) and its
//     offset (consecutive from 0 per partition, in file order).
//  3. Decodes each record through the column mapping, by the job's
//     validation contract (README, "What the job computes"): the sent
//     message value (its size computed by the replayer's conversion rules)
//     at most MaxMessageBytes; pboxid 1..64 bytes of UTF-8 without control
//     characters, U+FFFD or white space at either end; event_time
//     "YYYY-MM-DD HH:MM:SS[.fff]" or with "T", UTC, or RFC 3339 with an
//     offset, or integer epoch milliseconds, within 1000-01-01 + E ..
//     9999-12-31 23:59:59.999 − E (E = window size or session gap); metric a
//     finite number (a numeric string is accepted) with |metric| <= 1e290;
//     latitude in [-90, 90] and longitude in [-180, 180], each optional
//     (empty or null = absent); with MaxFuture set, event time at most
//     MaxFuture after Now. Anything else is a dead letter whose Reason
//     starts with the job's reason name (ReasonLabel).
//  4. Simulates the watermark of every partition in offset order: W = max
//     event time of the valid records so far − out-of-orderness. A valid
//     record with event time < W − allowed lateness (W before the record) is
//     late; the others are the readings.
//  5. Per device, over the readings: the windows (tumbling, sliding or
//     session; every window fires in bounded mode) and the work periods
//     (maximal runs of readings with metric strictly above the threshold,
//     consecutive readings at most max gap apart).
//
// # Usage
//
//	opts := oracle.DefaultOptions()
//	opts.Delimiter = ';'
//	opts.Mapping, _ = oracle.ParseMapping("pboxid=sensor_id,event_time=timestamp,metric=P1,latitude=lat,longitude=lon")
//	want, err := oracle.ComputeFile("aberdeen.csv.gz", opts)
//	got, err := oracle.LoadSQLite(ctx, "eddy.db")
//	diff := oracle.Compare(got, want)
//	if !diff.Equal() { fmt.Print(diff.Format(20)) }
//
// The command eddy verify does the same from a job spec and flags. The
// package lives under cmd/eddy because eddy verify is its supported user;
// it must not move under operators/ (or import it): its value is that it is
// an independent second implementation. The tests under tests/ import it too.
package oracle
