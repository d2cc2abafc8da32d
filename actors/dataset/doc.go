// Package dataset reads device datasets (CSV or NDJSON, plain or gzip) and
// replays them into Kafka as seed-schema JSON: the producer side of eddy's
// demos, benchmarks and end-to-end tests (`eddy replay`, `eddy dev`).
//
// # Reading
//
// Open (or OpenReader) streams a file one row at a time; nothing is held in
// memory beyond the current row. The format comes from the name (.csv,
// .ndjson, .jsonl, .json, each optionally .gz) unless Options.Format is set;
// gzip is detected from the magic bytes. CSV needs a header line; its
// delimiter is Options.Delimiter (default ','). A Mapping names the input
// column of each seed-schema field:
//
//	m, err := dataset.ParseMapping("pboxid=sensor_id,event_time=timestamp,metric=P1,latitude=lat,longitude=lon")
//	r, err := dataset.Open("aberdeen.csv.gz", dataset.Options{Delimiter: ';', Mapping: m})
//	defer r.Close()
//	for {
//		rec, err := r.Next()
//		if errors.Is(err, io.EOF) { break }
//		var bad *dataset.RowError
//		if errors.As(err, &bad) { log.Printf("skip line %d: %v", bad.Line, bad.Err); continue }
//		if err != nil { return err }
//		use(rec.Key, rec.Value)
//	}
//
// The embedded Aberdeen dataset (package aberdeen, 929,022 readings) opens
// with dataset.Open(dataset.EmbeddedAberdeen, dataset.Options{}), which
// applies AberdeenMapping and AberdeenDelimiter.
//
// # Conversion rules
//
// Every record becomes one Kafka message: key = the pboxid text, value =
//
//	{"event_time":"2019-03-01T00:00:08","metric":11.87,"pboxid":"17079","latitude":57.106,"longitude":-2.088}
//
// with the members in this order and:
//
//   - pboxid and event_time: always JSON strings holding the raw text.
//   - metric, latitude, longitude: a JSON number when the text, white space
//     trimmed, is a finite decimal number (the trimmed text if it already
//     is JSON number syntax, e.g. 2.50; else strconv.FormatFloat(v, 'g',
//     -1, 64), e.g. "+5" → 5); otherwise the original text as a JSON string
//     ("abc", "NaN", "1e999", "0x10"), so the job turns the record into a
//     dead letter instead of the replayer hiding it.
//   - an empty latitude or longitude is left out; an empty metric is sent
//     as "" (a dead letter in the job).
//
// NDJSON: the mapped members of each object are looked up; strings follow
// the CSV rules above; JSON numbers pass through unchanged (a numeric
// pboxid is then also the key text); null or missing members are left out;
// booleans, objects and arrays pass through for the job to reject.
//
// Bad rows — a CSV row whose field count differs from the header's, a CSV
// quoting error, an NDJSON line that is not one JSON object — are returned
// by Next as *RowError with the 1-based file line; they are not sent, and
// Replay counts them and lists the first lines.
//
// # Replaying
//
// Replay produces every record of a Reader to a topic with an IBM/sarama
// AsyncProducer (NewProducerConfig): sarama's hash partitioner, so a device
// always lands in one partition; acks from the partition leader; one request
// in flight per broker, so offsets follow file order within a partition.
// ReplayOptions.Speed paces the records by event time (X times real time);
// 0 sends as fast as possible (about 200-300k messages/s on two cores
// against the embedded broker). It returns a ReplaySummary: rows read,
// records produced, bad rows skipped with their lines, failures, duration
// and rate.
package dataset
