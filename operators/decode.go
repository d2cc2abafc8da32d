package operators

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Dead-letter and late reasons. A DeadLetter's Reason is one of these
// constants, optionally followed by ": " and a human-readable detail; the
// constant alone (ReasonLabel) is used as a metric label.
const (
	ReasonMalformedJSON    = "malformed_json"
	ReasonOversized        = "oversized"
	ReasonMissingPboxID    = "missing_pboxid"
	ReasonInvalidPboxID    = "invalid_pboxid"
	ReasonMissingEventTime = "missing_event_time"
	ReasonInvalidEventTime = "invalid_event_time"
	ReasonMissingMetric    = "missing_metric"
	ReasonInvalidMetric    = "invalid_metric"
	ReasonInvalidLatitude  = "invalid_latitude"
	ReasonInvalidLongitude = "invalid_longitude"
	// ReasonPboxIDTooLong: the device id is longer than MaxPboxIDBytes.
	ReasonPboxIDTooLong = "pboxid_too_long"
	// ReasonEventTimeOutOfRange: the event time parsed but lies outside
	// Config.EventTimeRange, so a window of it could not be stored.
	ReasonEventTimeOutOfRange = "event_time_out_of_range"
	// ReasonMetricOutOfRange: |metric| > MaxAbsMetric, so a sum of it could
	// overflow.
	ReasonMetricOutOfRange = "metric_out_of_range"
	// ReasonFutureEventTime: the event time is more than Config.MaxFuture
	// ahead of the processing time (Partition.AdvanceProcessingTime).
	ReasonFutureEventTime = "future_event_time"
	// ReasonOperatorPanic is the dead-letter reason of a record that kept
	// panicking the operator chain; the partition actor gives it (package
	// actors), with the panic value as detail.
	ReasonOperatorPanic = "operator_panic"
	// ReasonLate is the Reason of every LateRecord.
	ReasonLate = "late"
	// ReasonOther is the label ReasonLabel gives any unknown reason.
	ReasonOther = "other"
)

// ReasonLabel returns the constant part of a reason ("invalid_metric" for
// "invalid_metric: \"abc\" is not a number"), or ReasonOther when that part
// is not one of the Reason constants. The result is a small fixed set,
// suitable as a Prometheus label value.
func ReasonLabel(reason string) string {
	if i := strings.IndexByte(reason, ':'); i >= 0 {
		reason = reason[:i]
	}
	switch reason {
	case ReasonMalformedJSON, ReasonOversized, ReasonMissingPboxID, ReasonInvalidPboxID,
		ReasonMissingEventTime, ReasonInvalidEventTime, ReasonMissingMetric, ReasonInvalidMetric,
		ReasonInvalidLatitude, ReasonInvalidLongitude, ReasonPboxIDTooLong, ReasonEventTimeOutOfRange,
		ReasonMetricOutOfRange, ReasonFutureEventTime, ReasonOperatorPanic, ReasonLate:
		return reason
	}
	return ReasonOther
}

// DecodeError is the error of Decoder.Decode: why a message value is a dead
// letter.
type DecodeError struct {
	Reason string // one of the Reason* constants
	Detail string // human-readable detail; may be empty
}

// Error returns Reason, or Reason + ": " + Detail.
func (e *DecodeError) Error() string {
	if e.Detail == "" {
		return e.Reason
	}
	return e.Reason + ": " + e.Detail
}

// Decoded is one valid message of the seed schema.
type Decoded struct {
	PboxID    string  // 1..MaxPboxIDBytes bytes of UTF-8 (see Decoder)
	EventTime int64   // Unix ms UTC, within Config.EventTimeRange
	Metric    float64 // |Metric| <= MaxAbsMetric
	Latitude  float64 // in [-90, 90]; NaN when absent
	Longitude float64 // in [-180, 180]; NaN when absent
}

// Decoder decodes and validates message values of the seed schema:
//
//	{"event_time":"2019-03-01 00:00:08","metric":11.87,"pboxid":"17079","latitude":57.106,"longitude":-2.088}
//
// The value must be exactly one JSON object (RFC 8259, valid UTF-8; white
// space around it is allowed). Unknown members are ignored; a repeated
// member's last value wins; member names are case-sensitive.
//
//   - pboxid: a JSON string or a JSON integer (used as written, e.g.
//     17079). Empty → invalid_pboxid; more than MaxPboxIDBytes bytes →
//     pboxid_too_long; a control character (Unicode Cc: U+0000..U+001F,
//     U+007F..U+009F), U+FFFD (invalid UTF-8 or an unpaired surrogate
//     upstream) or white space at the start or end → invalid_pboxid. The
//     id is kept as is otherwise. These rules keep ids distinct in every
//     sink: a 64-character key column truncates nothing, and a PAD SPACE
//     collation cannot make "a" and "a " one key.
//   - event_time: a JSON string "YYYY-MM-DD HH:MM:SS[.fff]" or
//     "YYYY-MM-DDTHH:MM:SS[.fff]" in Config.Location, an RFC 3339 string with
//     "Z" or a ±HH:MM offset, a string of only digits (optional leading '-')
//     or a JSON integer: Unix milliseconds. Fractions of 1..9 digits are
//     truncated to milliseconds. Anything else, or a time outside the years
//     0001..9999, → invalid_event_time. A time outside
//     Config.EventTimeRange (the SQL DATETIME range shrunk by the window
//     extent) → event_time_out_of_range.
//   - metric: a JSON number or a string holding a decimal number
//     (surrounding white space ignored); must be finite (else
//     invalid_metric) and |metric| <= MaxAbsMetric (else
//     metric_out_of_range).
//   - latitude, longitude: optional (absent or null = NaN); a JSON number or
//     numeric string in [-90, 90] and [-180, 180].
//
// When several things are wrong, the first failing check in this order gives
// the reason: oversized, malformed_json, pboxid, event_time, metric,
// latitude, longitude.
//
// The scanner is hand-written and allocation-free for valid input. A Decoder
// is not safe for concurrent use; use one per partition.
type Decoder struct {
	maxBytes    int
	loc         *time.Location
	utc         bool
	minT, maxT  int64 // Config.EventTimeRange
	rangeDetail string

	sc     scanner
	keyBuf []byte // unescaped member names
	idBuf  []byte // unescaped pboxid
	strBuf []byte // other unescaped strings
	intern map[string]string
}

// maxIntern bounds the pboxid intern table of Decoder.Decode.
const maxIntern = 1 << 14

// NewDecoder returns a Decoder for cfg's Location, MaxMessageBytes and
// EventTimeRange (cfg need not be otherwise valid; MaxMessageBytes <= 0
// means the default).
func NewDecoder(cfg Config) *Decoder {
	d := &Decoder{maxBytes: cfg.MaxMessageBytes, loc: cfg.location()}
	if d.maxBytes <= 0 {
		d.maxBytes = DefaultMaxMessageBytes
	}
	d.utc = d.loc == time.UTC
	d.minT, d.maxT = cfg.EventTimeRange()
	d.rangeDetail = " is outside [" + formatMillis(d.minT) + ", " + formatMillis(d.maxT) + "] (the sinks' DATETIME range less the window extent)"
	return d
}

// rawDecoded is Decoded with the device id as bytes that alias the message
// value or the Decoder's buffers (valid until the next decode).
type rawDecoded struct {
	pboxID    []byte
	eventTime int64
	metric    float64
	lat, lon  float64
}

// Decode decodes one message value. On failure the error is a *DecodeError.
// Decoded.PboxID does not alias value.
func (d *Decoder) Decode(value []byte) (Decoded, error) {
	var r rawDecoded
	if err := d.decode(value, &r); err != nil {
		return Decoded{}, err
	}
	id, ok := d.intern[string(r.pboxID)]
	if !ok {
		id = string(r.pboxID)
		if d.intern == nil {
			d.intern = make(map[string]string)
		}
		if len(d.intern) < maxIntern {
			d.intern[id] = id
		}
	}
	return Decoded{PboxID: id, EventTime: r.eventTime, Metric: r.metric, Latitude: r.lat, Longitude: r.lon}, nil
}

func decodeErr(reason, detail string) *DecodeError {
	return &DecodeError{Reason: reason, Detail: detail}
}

// quoteTrunc quotes b for an error detail, shortened to a readable length.
func quoteTrunc(b []byte) string {
	const max = 64
	if len(b) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return strconv.Quote(string(b[:cut])) + "..."
	}
	return strconv.Quote(string(b))
}

// describe renders a raw value for an error detail.
func describe(v rawValue) string {
	switch v.kind {
	case kindString:
		return quoteTrunc(v.raw) // still escaped when v.esc; good enough for a detail
	case kindNumber, kindBool:
		return string(v.raw)
	}
	return v.kind.String()
}

func (d *Decoder) decode(value []byte, r *rawDecoded) *DecodeError {
	if len(value) > d.maxBytes {
		return decodeErr(ReasonOversized, strconv.Itoa(len(value))+" bytes > limit "+strconv.Itoa(d.maxBytes))
	}
	var pbox, etime, metric, lat, lon rawValue
	s := &d.sc
	*s = scanner{b: value}
	if !d.scanTop(&pbox, &etime, &metric, &lat, &lon) {
		return decodeErr(ReasonMalformedJSON, s.errMsg+" at byte "+strconv.Itoa(s.errAt))
	}
	s.b = nil

	// pboxid
	switch pbox.kind {
	case kindAbsent, kindNull:
		return decodeErr(ReasonMissingPboxID, "")
	case kindString:
		id := pbox.raw
		if pbox.esc {
			d.idBuf = unescapeJSON(d.idBuf[:0], pbox.raw)
			id = d.idBuf
		}
		if err := checkPboxID(id); err != nil {
			return err
		}
		r.pboxID = id
	case kindNumber:
		if !isIntegerLiteral(pbox.raw) {
			return decodeErr(ReasonInvalidPboxID, "number "+string(pbox.raw)+" is not an integer")
		}
		if len(pbox.raw) > MaxPboxIDBytes {
			return decodeErr(ReasonPboxIDTooLong, strconv.Itoa(len(pbox.raw))+" bytes > "+strconv.Itoa(MaxPboxIDBytes))
		}
		r.pboxID = pbox.raw
	default:
		return decodeErr(ReasonInvalidPboxID, "got "+describe(pbox)+", want a string or an integer")
	}

	// event_time
	switch etime.kind {
	case kindAbsent, kindNull:
		return decodeErr(ReasonMissingEventTime, "")
	case kindNumber:
		t, ok := parseEpochMillis(etime.raw)
		if !ok {
			return decodeErr(ReasonInvalidEventTime, "number "+string(etime.raw)+" is not integer epoch milliseconds in years 0001..9999")
		}
		r.eventTime = t
	case kindString:
		txt := etime.raw
		if etime.esc {
			d.strBuf = unescapeJSON(d.strBuf[:0], etime.raw)
			txt = d.strBuf
		}
		var t int64
		var ok bool
		if isEpochText(txt) {
			t, ok = parseEpochMillis(txt)
		} else {
			t, ok = parseTextTime(txt, d.loc, d.utc)
		}
		if !ok {
			return decodeErr(ReasonInvalidEventTime, quoteTrunc(txt)+" is not YYYY-MM-DD[T ]HH:MM:SS[.fff][Z|±HH:MM] or epoch milliseconds")
		}
		r.eventTime = t
	default:
		return decodeErr(ReasonInvalidEventTime, "got "+describe(etime)+", want a string or an integer")
	}
	if r.eventTime < d.minT || r.eventTime > d.maxT {
		return decodeErr(ReasonEventTimeOutOfRange, formatMillis(r.eventTime)+d.rangeDetail)
	}

	// metric
	if metric.kind == kindAbsent || metric.kind == kindNull {
		return decodeErr(ReasonMissingMetric, "")
	}
	m, detail := d.number(metric)
	if detail != "" {
		return decodeErr(ReasonInvalidMetric, detail)
	}
	if m > MaxAbsMetric || m < -MaxAbsMetric {
		return decodeErr(ReasonMetricOutOfRange, strconv.FormatFloat(m, 'g', -1, 64)+" is outside [-1e290, 1e290]")
	}
	r.metric = m

	// latitude, longitude
	r.lat, r.lon = math.NaN(), math.NaN()
	if lat.kind != kindAbsent && lat.kind != kindNull {
		v, detail := d.number(lat)
		if detail == "" && (v < -90 || v > 90) {
			detail = strconv.FormatFloat(v, 'g', -1, 64) + " is outside [-90, 90]"
		}
		if detail != "" {
			return decodeErr(ReasonInvalidLatitude, detail)
		}
		r.lat = v
	}
	if lon.kind != kindAbsent && lon.kind != kindNull {
		v, detail := d.number(lon)
		if detail == "" && (v < -180 || v > 180) {
			detail = strconv.FormatFloat(v, 'g', -1, 64) + " is outside [-180, 180]"
		}
		if detail != "" {
			return decodeErr(ReasonInvalidLongitude, detail)
		}
		r.lon = v
	}
	return nil
}

// scanTop scans the whole value, which must be one JSON object, and captures
// the members eddy reads.
func (d *Decoder) scanTop(pbox, etime, metric, lat, lon *rawValue) bool {
	s := &d.sc
	s.ws()
	if s.i >= len(s.b) {
		return s.fail("empty message, want a JSON object")
	}
	if s.b[s.i] != '{' {
		return s.fail("want a JSON object")
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
	} else {
		for {
			if s.i >= len(s.b) || s.b[s.i] != '"' {
				return s.fail("want an object key")
			}
			ka, ke, kesc, ok := s.str()
			if !ok {
				return false
			}
			key := s.b[ka:ke]
			if kesc {
				d.keyBuf = unescapeJSON(d.keyBuf[:0], key)
				key = d.keyBuf
			}
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return s.fail("want ':' after object key")
			}
			s.i++
			s.ws()
			v, ok := s.value(1)
			if !ok {
				return false
			}
			switch string(key) {
			case "pboxid":
				*pbox = v
			case "event_time":
				*etime = v
			case "metric":
				*metric = v
			case "latitude":
				*lat = v
			case "longitude":
				*lon = v
			}
			s.ws()
			if s.i >= len(s.b) {
				return s.fail("unexpected end of input in object")
			}
			if s.b[s.i] == ',' {
				s.i++
				s.ws()
				continue
			}
			if s.b[s.i] == '}' {
				s.i++
				break
			}
			return s.fail("want ',' or '}' in object")
		}
	}
	s.ws()
	if s.i != len(s.b) {
		return s.fail("trailing data after the JSON object")
	}
	return true
}

// number interprets a metric, latitude or longitude value: a JSON number or
// a string holding a decimal number. It returns a non-empty detail when the
// value is not an acceptable finite number.
func (d *Decoder) number(v rawValue) (float64, string) {
	var txt []byte
	switch v.kind {
	case kindNumber:
		txt = v.raw
	case kindString:
		txt = v.raw
		if v.esc {
			d.strBuf = unescapeJSON(d.strBuf[:0], v.raw)
			txt = d.strBuf
		}
		txt = trimSpace(txt)
		if len(txt) == 0 {
			return 0, "empty string"
		}
		if !isDecimalText(txt) {
			return 0, quoteTrunc(txt) + " is not a decimal number"
		}
	default:
		return 0, "got " + describe(v) + ", want a number"
	}
	if f, ok := fastFloat(txt); ok {
		return f, ""
	}
	f, err := strconv.ParseFloat(bytesToString(txt), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, quoteTrunc(txt) + " is not a finite number"
	}
	return f, ""
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// fastFloat parses the common short form -?digits[.digits] with at most 15
// digits exactly (Clinger's fast path: an integer mantissa below 2^53
// divided by an exact power of ten is correctly rounded, so the result is
// the one strconv.ParseFloat returns). ok is false for anything else.
func fastFloat(b []byte) (float64, bool) {
	i := 0
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		i = 1
	}
	var mant uint64
	nd, frac := 0, -1
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			nd++
			if frac >= 0 {
				frac++
			}
		case c == '.' && frac < 0:
			frac = 0
		default:
			return 0, false
		}
	}
	if nd == 0 || nd > 15 {
		return 0, false
	}
	f := float64(mant)
	if frac > 0 {
		f /= pow10[frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

// bytesToString views b as a string without copying; the string must not
// outlive the call it is passed to.
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// isIntegerLiteral reports whether a JSON number literal has no fraction and
// no exponent.
func isIntegerLiteral(b []byte) bool {
	for _, c := range b {
		if c == '.' || c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

// isDecimalText reports whether b is [+-]?(digits[.digits?]|.digits)([eE][+-]?digits)?
// — the decimal notation accepted by strconv.ParseFloat, Python's float and
// Java's BigDecimal alike (no hex, no underscores, no inf or nan).
func isDecimalText(b []byte) bool {
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	nd := 0
	for i < len(b) && isDigit(b[i]) {
		i++
		nd++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && isDigit(b[i]) {
			i++
			nd++
		}
	}
	if nd == 0 {
		return false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		ne := 0
		for i < len(b) && isDigit(b[i]) {
			i++
			ne++
		}
		if ne == 0 {
			return false
		}
	}
	return i == len(b)
}

// trimSpace trims Unicode white space around b.
func trimSpace(b []byte) []byte {
	for len(b) > 0 {
		if b[0] < utf8.RuneSelf {
			if !asciiSpace(b[0]) {
				break
			}
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		if !unicode.IsSpace(r) {
			break
		}
		b = b[n:]
	}
	for len(b) > 0 {
		c := b[len(b)-1]
		if c < utf8.RuneSelf {
			if !asciiSpace(c) {
				break
			}
			b = b[:len(b)-1]
			continue
		}
		r, n := utf8.DecodeLastRune(b)
		if !unicode.IsSpace(r) {
			break
		}
		b = b[:len(b)-n]
	}
	return b
}

func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// MaxPboxIDBytes is the longest accepted device id in bytes: the key columns
// of the SQL sinks are VARCHAR(64), and 64 bytes are at most 64 characters.
const MaxPboxIDBytes = 64

// MaxAbsMetric bounds |metric|. With every value at most 1e290 in
// magnitude, any sum of up to 2^53 of them stays below 2.5e306 even with
// the rounding of every addition (each multiplies the bound by at most
// 1+2^-53, and (1+2^-53)^(2^53) < e), so the count, sum, min, max and avg of
// every window and work period are finite DOUBLEs that every sink stores.
// The alternative, dead-lettering the reading that would make a sum
// overflow, would make a reading's validity depend on its window, on the
// arrival order and on session merges; this rule depends on the reading
// alone. Physical sensors are more than 280 orders of magnitude below it.
const MaxAbsMetric = 1e290

// checkPboxID applies the device id rules of Decoder to a JSON string's
// unescaped bytes (valid UTF-8 after the scanner, but checked again).
func checkPboxID(id []byte) *DecodeError {
	if len(id) == 0 {
		return decodeErr(ReasonInvalidPboxID, "empty")
	}
	if len(id) > MaxPboxIDBytes {
		return decodeErr(ReasonPboxIDTooLong, strconv.Itoa(len(id))+" bytes > "+strconv.Itoa(MaxPboxIDBytes))
	}
	for i := 0; i < len(id); {
		c := id[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return decodeErr(ReasonInvalidPboxID, "control character "+strconv.QuoteRune(rune(c))+" at byte "+strconv.Itoa(i))
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(id[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return decodeErr(ReasonInvalidPboxID, "invalid UTF-8 at byte "+strconv.Itoa(i))
		case r == utf8.RuneError:
			return decodeErr(ReasonInvalidPboxID, "U+FFFD at byte "+strconv.Itoa(i)+" (invalid UTF-8 or an unpaired surrogate upstream)")
		case unicode.IsControl(r):
			return decodeErr(ReasonInvalidPboxID, "control character "+strconv.QuoteRune(r)+" at byte "+strconv.Itoa(i))
		}
		i += n
	}
	if t := trimSpace(id); len(t) != len(id) {
		if len(t) == 0 {
			return decodeErr(ReasonInvalidPboxID, "white space only")
		}
		return decodeErr(ReasonInvalidPboxID, quoteTrunc(id)+" has white space at the start or end")
	}
	return nil
}

// formatMillis renders Unix ms as "YYYY-MM-DD HH:MM:SS.sss" UTC for error
// details.
func formatMillis(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000")
}
