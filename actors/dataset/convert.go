package dataset

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Conversion of input values to the seed-schema JSON value. The rules are a
// contract (the replay checker and the oracle depend on them):
//
//   - pboxid and event_time: always a JSON string holding the raw text.
//   - metric, latitude, longitude: a JSON number when the text, with
//     surrounding white space trimmed, is a finite decimal number
//     ([+-]?(d+[.d*]|.d+)([eE][+-]?d+)?, as strconv.ParseFloat, Java's
//     BigDecimal and eddy's decoder read it; no hex, no underscores, no
//     Inf/NaN); otherwise the original text as a JSON string, so the job
//     turns the record into a dead letter.
//   - an empty latitude or longitude is left out; an empty metric is "".
//
// The number is written as the trimmed text when that is already valid JSON
// number syntax (so "2.50" stays 2.50), else as strconv.FormatFloat(v, 'g',
// -1, 64) ("+5" → 5, ".5" → 0.5, "5." → 5).

// appendNumberOrString appends s as a JSON number if it is a finite decimal
// number, else as a JSON string of the original text.
func appendNumberOrString(dst []byte, s string) []byte {
	t := strings.TrimSpace(s)
	if isDecimal(t) {
		if f, err := strconv.ParseFloat(t, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			if isJSONNumber(t) {
				return append(dst, t...)
			}
			return strconv.AppendFloat(dst, f, 'g', -1, 64)
		}
	}
	return appendJSONString(dst, s)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isDecimal reports whether s is [+-]?(digits[.digits?]|.digits)([eE][+-]?digits)?.
func isDecimal(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	nd := 0
	for i < len(s) && isDigit(s[i]) {
		i++
		nd++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			nd++
		}
	}
	if nd == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		ne := 0
		for i < len(s) && isDigit(s[i]) {
			i++
			ne++
		}
		if ne == 0 {
			return false
		}
	}
	return i == len(s)
}

// isJSONNumber reports whether s is -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)? (RFC 8259).
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		n := 0
		for i < len(s) && isDigit(s[i]) {
			i++
			n++
		}
		if n == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		n := 0
		for i < len(s) && isDigit(s[i]) {
			i++
			n++
		}
		if n == 0 {
			return false
		}
	}
	return i == len(s)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: '"' and '\' escaped, control
// characters as \n, \r, \t or \u00XX, invalid UTF-8 as U+FFFD. Other bytes,
// including non-ASCII UTF-8, are written as they are.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
