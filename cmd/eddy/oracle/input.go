package oracle

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maybeGunzip returns r decompressed when it starts with the gzip magic bytes.
func maybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("oracle: gzip: %w", err)
		}
		return bufio.NewReaderSize(zr, 1<<20), nil
	}
	return br, nil
}

// readRecords calls fn for every record the replayer would send, in file
// order, and returns the number of rows it skipped (CSV rows with the wrong
// column count, blank NDJSON lines).
func readRecords(r io.Reader, o *Options, fn func(*rawRecord)) (skipped int64, err error) {
	r, err = maybeGunzip(r)
	if err != nil {
		return 0, err
	}
	if o.Format == FormatNDJSON {
		return readNDJSON(r, o, fn)
	}
	return readCSV(r, o, fn)
}

func readCSV(r io.Reader, o *Options, fn func(*rawRecord)) (int64, error) {
	cr := csv.NewReader(r)
	cr.Comma = o.Delimiter
	cr.FieldsPerRecord = -1 // checked below: a bad row is skipped, not fatal
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return 0, fmt.Errorf("oracle: csv header: %w", err)
	}
	index := make(map[string]int, len(header))
	for i, h := range header {
		index[h] = i
	}
	ncols := len(header)
	col := func(name string, required bool) (int, error) {
		i, ok := index[name]
		if !ok && !required {
			return -1, nil // an optional field without a column is absent
		}
		if !ok {
			return 0, fmt.Errorf("oracle: csv header has no column %q (header: %v)", name, header)
		}
		return i, nil
	}
	var idx [5]int
	for i, c := range []struct {
		name     string
		required bool
	}{{o.Mapping.PboxID, true}, {o.Mapping.EventTime, true}, {o.Mapping.Metric, true}, {o.Mapping.Latitude, false}, {o.Mapping.Longitude, false}} {
		if idx[i], err = col(c.name, c.required); err != nil {
			return 0, err
		}
	}
	get := func(row []string, i int) any {
		if i < 0 {
			return nil
		}
		return row[i]
	}
	var skipped, sent int64
	for o.Limit == 0 || sent < o.Limit {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return skipped, nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && !errors.Is(err, csv.ErrFieldCount) {
			skipped++ // a quoting error: the replayer skips the row too
			continue
		}
		if err != nil {
			return skipped, fmt.Errorf("oracle: csv: %w", err)
		}
		if len(row) != ncols {
			skipped++
			continue
		}
		rec := &rawRecord{pboxid: get(row, idx[0]), eventTime: get(row, idx[1]), metric: get(row, idx[2]),
			latitude: get(row, idx[3]), longitude: get(row, idx[4])}
		var vals [5]sentValue
		for i, v := range []any{rec.eventTime, rec.metric, rec.pboxid, rec.latitude, rec.longitude} {
			if s, ok := v.(string); ok {
				vals[i] = sentValue{text: s, hasText: true}
			}
		}
		rec.size = sentSize(&vals)
		fn(rec)
		sent++
	}
	return skipped, nil
}

func readNDJSON(r io.Reader, o *Options, fn func(*rawRecord)) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var skipped, sent int64
	for (o.Limit == 0 || sent < o.Limit) && sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			skipped++
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var obj map[string]any
		rec := &rawRecord{}
		if err := dec.Decode(&obj); err != nil || dec.More() || obj == nil {
			skipped++ // not one JSON object: the replayer skips the line
			continue
		} else {
			get := func(name string) any {
				if name == "" {
					return nil
				}
				return obj[name]
			}
			rec.pboxid, rec.eventTime, rec.metric = get(o.Mapping.PboxID), get(o.Mapping.EventTime), get(o.Mapping.Metric)
			rec.latitude, rec.longitude = get(o.Mapping.Latitude), get(o.Mapping.Longitude)
			var raws map[string]json.RawMessage
			_ = json.Unmarshal(line, &raws) // valid: decoded above
			var vals [5]sentValue
			for i, col := range []string{o.Mapping.EventTime, o.Mapping.Metric, o.Mapping.PboxID, o.Mapping.Latitude, o.Mapping.Longitude} {
				if col != "" {
					vals[i].raw = raws[col]
				}
			}
			rec.size = sentSize(&vals)
		}
		fn(rec)
		sent++
	}
	if err := sc.Err(); err != nil {
		return skipped, fmt.Errorf("oracle: ndjson: %w", err)
	}
	return skipped, nil
}
