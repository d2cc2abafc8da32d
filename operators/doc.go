// Package operators is the deterministic core of eddy: decoding and
// validation of device records, enrichment with broadcast device data,
// watermarks, event-time windows and work-period detection.
//
// Everything here is a plain struct driven by method calls: no goroutines,
// no I/O, no clocks. Time enters as the event times of the records and, only
// for the watermark guards, as processing time passed in by the caller, so
// the same input in the same order always yields the same output (with the
// guards off, whatever the wall clock).
//
// # Usage
//
// One Partition runs the whole operator chain for one device partition (one
// source partition; many devices):
//
//	cfg := operators.DefaultConfig()         // tumbling 1 min, threshold 50, ...
//	devs, err := operators.LoadDevices(data) // optional broadcast data
//	p := operators.NewPartition(0, cfg, devs)
//	var out operators.Output
//	for _, rec := range records {            // in source-offset order
//		p.Process(rec.Offset, rec.Value, &out)
//		if out.Len() > 1000 {
//			sink.Write(ctx, &out)
//			out.Reset()
//		}
//	}
//	p.Finish(&out) // bounded mode: final watermark
//
// # Semantics
//
//   - Decoder: one JSON object per message of the seed schema; invalid
//     records become dead letters whose Reason is a Reason* constant plus
//     detail (see Decoder for the exact rules and check order). The rules
//     are a contract: every value a Partition accepts, every sink can store
//     — event times within Config.EventTimeRange (SQL DATETIME less the
//     window extent), |metric| <= MaxAbsMetric (so no sum overflows), device
//     ids of 1..MaxPboxIDBytes bytes without control characters, U+FFFD or
//     white space at either end.
//   - Watermark guards, both off by default: Config.MaxFuture turns readings
//     too far ahead of the processing time into dead letters
//     (future_event_time) that do not move the watermark; Config.IdleTimeout
//     lets the watermark of a quiet partition follow processing time.
//     Processing time comes in through Partition.AdvanceProcessingTime.
//   - Watermark: per partition, max event time of the valid records so far
//     minus Config.OutOfOrderness.
//   - Late records: event time < watermark − Config.AllowedLateness, watermark
//     taken before the record; they go only to Output.Late.
//   - Windows: tumbling and sliding windows aligned to the Unix epoch in UTC,
//     and Flink-style session windows, per device; count, sum, min, max, avg
//     of the metric and the position of the latest reading.
//   - Work periods: maximal runs of readings strictly above the device's
//     threshold, consecutive readings at most Config.MaxGap apart.
//
// Output of a Partition equals a batch computation over the on-time readings
// of each device, whatever the arrival order within the out-of-orderness
// bound (tested against a brute-force implementation with random inputs).
//
// # Keyed state
//
// A Partition keeps the state of every device with open windows, buffered
// readings or an open work period; devices without any are forgotten. By
// default all of it is in memory. SetStore puts a StateStore behind an LRU
// cache of device states (Flink's RocksDB state backend): memory then holds
// at most the cached states plus about 90 bytes per device with state (its
// wake time in the timer heap). Checkpoint writes the changed cached states
// to the store, State returns the watermark and counters; RestoreState and
// RestoreDevice rebuild a partition from such a snapshot, after which it
// emits exactly what the original would have emitted. Device states have a
// versioned binary encoding (see encodeDeviceState in state.go);
// decoding errors wrap ErrBadState.
//
// Event times are Unix milliseconds (UTC) throughout.
package operators
