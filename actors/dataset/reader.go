package dataset

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/eddy-iot/eddy/actors/dataset/aberdeen"
)

// Format is the syntax of a dataset file.
type Format string

// Supported formats.
const (
	// FormatCSV: a header line naming the columns, then one record per
	// line, fields separated by Options.Delimiter, RFC 4180 quoting.
	FormatCSV Format = "csv"
	// FormatNDJSON: one JSON object per line (also called JSON Lines).
	FormatNDJSON Format = "ndjson"
)

// EmbeddedAberdeen is the path Open understands as the embedded Aberdeen
// dataset (package aberdeen). With a zero Options.Mapping and Delimiter it
// uses AberdeenMapping and AberdeenDelimiter.
const EmbeddedAberdeen = "embedded:aberdeen"

// Errors.
var (
	// ErrFormat: the format is unknown or cannot be told from the name.
	ErrFormat = errors.New("dataset: unknown format")
	// ErrBadRow is matched (errors.Is) by every *RowError.
	ErrBadRow = errors.New("dataset: bad row")
	// ErrColumnCount: a CSV row has a different number of fields than the
	// header. Wrapped in a *RowError.
	ErrColumnCount = errors.New("wrong number of columns")
	// ErrNotObject: an NDJSON line is not one JSON object. Wrapped in a
	// *RowError.
	ErrNotObject = errors.New("not a JSON object")
	// ErrClosed is returned by Next after Close.
	ErrClosed = errors.New("dataset: reader closed")
)

// RowError reports one input row that cannot be converted; Next returns it
// and the caller may count it and go on reading. Line is the 1-based line of
// the input file (after decompression) on which the row starts.
type RowError struct {
	Line int
	Err  error
}

func (e *RowError) Error() string { return fmt.Sprintf("dataset: line %d: %v", e.Line, e.Err) }

// Unwrap returns the cause (ErrColumnCount, ErrNotObject, a *csv.ParseError...).
func (e *RowError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrBadRow) true for every *RowError.
func (e *RowError) Is(target error) bool { return target == ErrBadRow }

// Options configures Open and OpenReader. The zero value reads a file named
// *.csv[.gz] with ',' or *.ndjson/*.jsonl/*.json[.gz], identity mapping.
type Options struct {
	// Format of the input; "" (default) tells it from the name: .csv is
	// CSV; .ndjson, .jsonl and .json are NDJSON; an extra .gz suffix is
	// allowed.
	Format Format

	// Delimiter separates CSV fields: one character other than '"', '\r',
	// '\n' and U+FFFD; 0 (default) is ','. Ignored for NDJSON.
	Delimiter rune

	// Mapping of input columns to seed-schema fields; the zero value is the
	// identity mapping.
	Mapping Mapping
}

// Record is one converted input row: a Kafka message of the seed schema.
type Record struct {
	// Line is the 1-based line of the input (after decompression) on which
	// the row starts.
	Line int
	// Key is the pboxid text: the Kafka message key. Never nil; empty when
	// the row has no usable pboxid.
	Key []byte
	// Value is the JSON object
	// {"event_time":…,"metric":…,"pboxid":…,"latitude":…,"longitude":…};
	// see the package documentation for the conversion rules.
	Value []byte
	// EventTime is the event_time text as read (a JSON number's text for
	// NDJSON numbers); "" when absent.
	EventTime string
}

// Reader streams the records of one dataset. It holds one row at a time.
// Not safe for concurrent use.
type Reader struct {
	name    string
	format  Format
	mapping Mapping
	src     io.Closer
	count   *countingReader
	size    int64 // input size in bytes as stored (compressed), -1 if unknown
	err     error // sticky fatal error

	// CSV
	csv    *csv.Reader
	header []string
	cols   columns

	// NDJSON
	lines *bufio.Reader
	line  int

	rows int64
}

// Open opens the dataset at path (or EmbeddedAberdeen) for streaming. It
// reads the CSV header and resolves the mapping against it, so a mapping
// error is reported here, naming the available columns. gzip input is
// detected from its magic bytes (a .gz name is only used to tell the
// format). Close the Reader when done.
func Open(path string, opts Options) (*Reader, error) {
	if path == EmbeddedAberdeen {
		if opts.Mapping.isZero() {
			m, err := ParseMapping(AberdeenMapping)
			if err != nil {
				return nil, err
			}
			opts.Mapping = m
		}
		if opts.Delimiter == 0 {
			opts.Delimiter = AberdeenDelimiter
		}
		return newReader(aberdeen.Name, aberdeen.Open(), aberdeen.Size, opts)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	r, err := newReader(path, f, size, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// OpenReader is Open for an already open input; name is used to tell the
// format (when Options.Format is "") and in messages. If r is an io.Closer,
// Reader.Close closes it. If r has a Size() int64 method (bytes.Reader,
// strings.Reader), it is used for Progress.
func OpenReader(name string, r io.Reader, opts Options) (*Reader, error) {
	size := int64(-1)
	if s, ok := r.(interface{ Size() int64 }); ok {
		size = s.Size()
	}
	return newReader(name, r, size, opts)
}

// FormatOf tells the format from a file name: .csv is CSV; .ndjson, .jsonl
// and .json are NDJSON; an extra .gz suffix is allowed. It returns an error
// wrapping ErrFormat for any other name.
func FormatOf(name string) (Format, error) {
	base := strings.ToLower(filepath.Base(name))
	base = strings.TrimSuffix(base, ".gz")
	switch filepath.Ext(base) {
	case ".csv":
		return FormatCSV, nil
	case ".ndjson", ".jsonl", ".json":
		return FormatNDJSON, nil
	}
	return "", fmt.Errorf("%w: cannot tell the format of %q from its name: want .csv, .ndjson, .jsonl or .json (optionally .gz), or set the format explicitly", ErrFormat, name)
}

func newReader(name string, src io.Reader, size int64, opts Options) (*Reader, error) {
	format := opts.Format
	if format == "" {
		f, err := FormatOf(name)
		if err != nil {
			return nil, err
		}
		format = f
	}
	if format != FormatCSV && format != FormatNDJSON {
		return nil, fmt.Errorf("%w: %q: want %q or %q", ErrFormat, format, FormatCSV, FormatNDJSON)
	}
	m := opts.Mapping
	if m.isZero() {
		m = IdentityMapping()
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	delim := opts.Delimiter
	if delim == 0 {
		delim = ','
	}
	if format == FormatCSV && (delim == '"' || delim == '\r' || delim == '\n' || delim == 0xFFFD || delim < 0) {
		return nil, fmt.Errorf("dataset: delimiter %q: want one character other than a quote or newline, e.g. ',' or ';'", delim)
	}

	r := &Reader{name: name, format: format, mapping: m, size: size, count: &countingReader{r: src}}
	if c, ok := src.(io.Closer); ok {
		r.src = c
	}
	in, err := decompress(r.count)
	if err != nil {
		return nil, fmt.Errorf("dataset: %s: %w", name, err)
	}
	switch format {
	case FormatCSV:
		r.csv = csv.NewReader(in)
		r.csv.Comma = delim
		r.csv.FieldsPerRecord = -1 // checked per row: a bad row is skipped, not fatal
		r.csv.ReuseRecord = true
		header, err := r.csv.Read()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("dataset: %s: empty input: a CSV file needs a header line", name)
		}
		if err != nil {
			return nil, fmt.Errorf("dataset: %s: reading the CSV header: %w", name, err)
		}
		header = append([]string(nil), header...)
		if len(header) > 0 {
			header[0] = strings.TrimPrefix(header[0], "\uFEFF") // UTF-8 byte order mark
		}
		cols, err := m.resolve(header)
		if err != nil {
			if len(header) == 1 && strings.ContainsAny(header[0], ",;\t|") {
				// Most likely the wrong delimiter.
				return nil, fmt.Errorf("%w (the header is one column: is the delimiter %q right?)", err, delim)
			}
			return nil, err
		}
		r.header, r.cols = header, cols
	case FormatNDJSON:
		r.lines = in
	}
	return r, nil
}

// decompress returns a buffered reader of r, gunzipped when it starts with
// the gzip magic bytes.
func decompress(r io.Reader) (*bufio.Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return bufio.NewReaderSize(zr, 256<<10), nil
	}
	return br, nil
}

// Name returns the name the Reader was opened with.
func (r *Reader) Name() string { return r.name }

// Format returns the input format.
func (r *Reader) Format() Format { return r.format }

// Mapping returns the mapping in use.
func (r *Reader) Mapping() Mapping { return r.mapping }

// Header returns the CSV header (nil for NDJSON). Do not modify it.
func (r *Reader) Header() []string { return r.header }

// Rows returns the number of data rows read so far, bad ones included.
func (r *Reader) Rows() int64 { return r.rows }

// Progress returns the input bytes consumed so far and the input size, both
// as stored (compressed for gzip input); size is -1 when unknown. Safe to
// call from another goroutine while Next runs.
func (r *Reader) Progress() (read, size int64) { return r.count.n.Load(), r.size }

// Next returns the next record. For a row that cannot be converted it
// returns a *RowError (errors.Is(err, ErrBadRow)); the caller may count it
// and call Next again. At the end of the input it returns io.EOF. Any other
// error (I/O, corrupt gzip) is fatal and returned again by later calls.
// Blank NDJSON lines are skipped; encoding/csv skips blank CSV lines.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	var rec Record
	var err error
	if r.format == FormatCSV {
		rec, err = r.nextCSV()
	} else {
		rec, err = r.nextNDJSON()
	}
	if err != nil && !errors.Is(err, ErrBadRow) {
		r.err = err
	}
	return rec, err
}

func (r *Reader) nextCSV() (Record, error) {
	row, err := r.csv.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			r.rows++
			return Record{}, &RowError{Line: pe.StartLine, Err: pe.Err}
		}
		if errors.Is(err, io.EOF) {
			return Record{}, io.EOF
		}
		return Record{}, fmt.Errorf("dataset: %s: %w", r.name, err)
	}
	r.rows++
	line, _ := r.csv.FieldPos(0)
	if len(row) != len(r.header) {
		return Record{}, &RowError{Line: line, Err: fmt.Errorf("%w: %d fields, the header has %d", ErrColumnCount, len(row), len(r.header))}
	}
	c := &r.cols
	pboxid, et, metric := row[c.pboxid], row[c.eventTime], row[c.metric]
	n := len(pboxid)*2 + len(et) + len(metric) + 64
	var lat, lon string
	if c.lat >= 0 {
		lat = row[c.lat]
		n += len(lat) + 14
	}
	if c.lon >= 0 {
		lon = row[c.lon]
		n += len(lon) + 14
	}
	buf := make([]byte, 0, n)
	buf = append(buf, pboxid...)
	k := len(buf)
	buf = append(buf, `{"event_time":`...)
	buf = appendJSONString(buf, et)
	buf = append(buf, `,"metric":`...)
	buf = appendNumberOrString(buf, metric)
	buf = append(buf, `,"pboxid":`...)
	buf = appendJSONString(buf, pboxid)
	if lat != "" {
		buf = append(buf, `,"latitude":`...)
		buf = appendNumberOrString(buf, lat)
	}
	if lon != "" {
		buf = append(buf, `,"longitude":`...)
		buf = appendNumberOrString(buf, lon)
	}
	buf = append(buf, '}')
	return Record{Line: line, Key: buf[:k:k], Value: buf[k:], EventTime: et}, nil
}

func (r *Reader) nextNDJSON() (Record, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return Record{}, err
		}
		r.line++
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		r.rows++
		return r.convertObject(line)
	}
}

// readLine returns the next line without its newline; io.EOF at the end.
// The slice is valid until the next call.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.lines.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = r.lines.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	switch {
	case err == nil:
		return line[:len(line)-1], nil
	case errors.Is(err, io.EOF) && len(line) > 0:
		return line, nil
	case errors.Is(err, io.EOF):
		return nil, io.EOF
	}
	return nil, fmt.Errorf("dataset: %s: %w", r.name, err)
}

func (r *Reader) convertObject(line []byte) (Record, error) {
	bad := func(detail string) (Record, error) {
		return Record{}, &RowError{Line: r.line, Err: fmt.Errorf("%w: %s", ErrNotObject, detail)}
	}
	if line[0] != '{' {
		return bad("the line does not start with '{'")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return bad(err.Error())
	}
	m := &r.mapping
	var rec Record
	rec.Line = r.line
	buf := make([]byte, 0, len(line)+32)
	first := true
	field := func(name string) {
		if first {
			buf = append(buf, '{', '"')
			first = false
		} else {
			buf = append(buf, ',', '"')
		}
		buf = append(buf, name...)
		buf = append(buf, '"', ':')
	}
	for _, f := range []struct {
		name, col string
		text      bool // pboxid/event_time: strings stay strings
		coord     bool // empty string = absent
	}{
		{FieldEventTime, m.EventTime, true, false},
		{FieldMetric, m.Metric, false, false},
		{FieldPboxID, m.PboxID, true, false},
		{FieldLatitude, m.Latitude, false, true},
		{FieldLongitude, m.Longitude, false, true},
	} {
		if f.col == "" {
			continue
		}
		raw, ok := obj[f.col]
		if !ok || string(raw) == "null" {
			continue // absent: the job decides (missing field or no position)
		}
		var text string
		switch raw[0] {
		case '"':
			if err := json.Unmarshal(raw, &text); err != nil {
				return bad(err.Error())
			}
			if f.coord && text == "" {
				continue
			}
			field(f.name)
			if f.text {
				buf = appendJSONString(buf, text)
			} else {
				buf = appendNumberOrString(buf, text)
			}
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			text = string(raw)
			field(f.name)
			buf = append(buf, raw...)
		default: // true, false, object, array: passed on for the job to reject
			field(f.name)
			buf = append(buf, raw...)
		}
		switch f.name {
		case FieldPboxID:
			rec.Key = []byte(text)
		case FieldEventTime:
			rec.EventTime = text
		}
	}
	if first {
		buf = append(buf, '{')
	}
	buf = append(buf, '}')
	if rec.Key == nil {
		rec.Key = []byte{}
	}
	rec.Value = buf
	return rec, nil
}

// Close releases the input. Later calls to Next return ErrClosed. Close is
// idempotent.
func (r *Reader) Close() error {
	if r.err == ErrClosed {
		return nil
	}
	r.err = ErrClosed
	if r.src != nil {
		return r.src.Close()
	}
	return nil
}
