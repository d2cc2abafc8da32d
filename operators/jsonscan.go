package operators

import (
	"unicode/utf8"
)

// A small, strict, allocation-free JSON scanner (RFC 8259) for the top-level
// object of a message. It validates the whole document and records the raw
// bytes of the top-level members eddy reads; nested values are validated and
// skipped. Strings must be valid UTF-8 and may not contain raw control
// characters; numbers follow the JSON grammar exactly.

type jsonKind uint8

const (
	kindAbsent jsonKind = iota
	kindNull
	kindBool
	kindNumber
	kindString
	kindObject
	kindArray
)

func (k jsonKind) String() string {
	switch k {
	case kindAbsent:
		return "absent"
	case kindNull:
		return "null"
	case kindBool:
		return "a JSON bool"
	case kindNumber:
		return "a JSON number"
	case kindString:
		return "a JSON string"
	case kindObject:
		return "a JSON object"
	case kindArray:
		return "a JSON array"
	}
	return "?"
}

// rawValue is one top-level member value.
type rawValue struct {
	kind jsonKind
	// raw is: for strings the bytes between the quotes (still escaped when
	// esc); for numbers the literal; for other kinds the full text.
	raw []byte
	esc bool // string contains escape sequences
}

// maxJSONDepth is the deepest nesting accepted (as encoding/json).
const maxJSONDepth = 10000

type scanner struct {
	b      []byte
	i      int
	errMsg string
	errAt  int
}

func (s *scanner) fail(msg string) bool {
	if s.errMsg == "" {
		s.errMsg = msg
		s.errAt = s.i
	}
	return false
}

// failAt is fail with the position set to i first.
func (s *scanner) failAt(i int, msg string) bool {
	s.i = i
	return s.fail(msg)
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (s *scanner) ws() {
	for s.i < len(s.b) && isWS(s.b[s.i]) {
		s.i++
	}
}

// str scans a string starting at the opening quote. It returns the span of
// its contents and whether it contains escapes. The position lives in a
// local variable while scanning (stored back on return), which keeps it in
// a register on the per-byte path.
func (s *scanner) str() (start, end int, esc, ok bool) {
	b := s.b
	i := s.i + 1 // opening quote
	start = i
	for i < len(b) {
		c := b[i]
		if plainStringByte[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			s.i = i + 1
			return start, i, esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				s.i = len(b)
				return 0, 0, false, s.fail("unexpected end of input in string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					s.i = len(b)
					return 0, 0, false, s.fail("unexpected end of input in string")
				}
				for k := i + 2; k < i+6; k++ {
					if hexVal(b[k]) < 0 {
						s.i = k
						return 0, 0, false, s.fail("invalid \\u escape in string")
					}
				}
				i += 6
			default:
				s.i = i + 1
				return 0, 0, false, s.fail("invalid escape in string")
			}
		case c < 0x20:
			s.i = i
			return 0, 0, false, s.fail("control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				s.i = i
				return 0, 0, false, s.fail("invalid UTF-8 in string")
			}
			i += size
		}
	}
	s.i = i
	return 0, 0, false, s.fail("unexpected end of input in string")
}

// plainStringByte marks the bytes a string may contain unexamined: printable
// ASCII except '"' and '\\'.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// num scans a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// (the position in a local variable, as in str).
func (s *scanner) num() bool {
	b := s.b
	i := s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return s.failAt(i, "unexpected end of input in number")
	}
	switch {
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return s.failAt(i, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return s.failAt(i, "invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return s.failAt(i, "invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.i = i
	return true
}

func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.fail("invalid literal")
	}
	s.i += len(word)
	return true
}

// value scans any JSON value at s.i (whitespace already skipped) and returns
// its description.
func (s *scanner) value(depth int) (rawValue, bool) {
	if s.i >= len(s.b) {
		return rawValue{}, s.fail("unexpected end of input, want a value")
	}
	start := s.i
	switch c := s.b[s.i]; c {
	case '"':
		a, e, esc, ok := s.str()
		if !ok {
			return rawValue{}, false
		}
		return rawValue{kind: kindString, raw: s.b[a:e], esc: esc}, true
	case '{':
		if !s.object(depth + 1) {
			return rawValue{}, false
		}
		return rawValue{kind: kindObject, raw: s.b[start:s.i]}, true
	case '[':
		if !s.array(depth + 1) {
			return rawValue{}, false
		}
		return rawValue{kind: kindArray, raw: s.b[start:s.i]}, true
	case 't':
		if !s.lit("true") {
			return rawValue{}, false
		}
		return rawValue{kind: kindBool, raw: s.b[start:s.i]}, true
	case 'f':
		if !s.lit("false") {
			return rawValue{}, false
		}
		return rawValue{kind: kindBool, raw: s.b[start:s.i]}, true
	case 'n':
		if !s.lit("null") {
			return rawValue{}, false
		}
		return rawValue{kind: kindNull, raw: s.b[start:s.i]}, true
	default:
		if c == '-' || isDigit(c) {
			if !s.num() {
				return rawValue{}, false
			}
			return rawValue{kind: kindNumber, raw: s.b[start:s.i]}, true
		}
		return rawValue{}, s.fail("unexpected character, want a value")
	}
}

// object skips a nested object starting at '{'.
func (s *scanner) object(depth int) bool {
	if depth > maxJSONDepth {
		return s.fail("nesting too deep")
	}
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.fail("want an object key")
		}
		if _, _, _, ok := s.str(); !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.fail("want ':' after object key")
		}
		s.i++
		s.ws()
		if _, ok := s.value(depth); !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.fail("unexpected end of input in object")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			return true
		default:
			return s.fail("want ',' or '}' in object")
		}
	}
}

// array skips a nested array starting at '['.
func (s *scanner) array(depth int) bool {
	if depth > maxJSONDepth {
		return s.fail("nesting too deep")
	}
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return true
	}
	for {
		if _, ok := s.value(depth); !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.fail("unexpected end of input in array")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return true
		default:
			return s.fail("want ',' or ']' in array")
		}
	}
}

// unescapeJSON appends the unescaped contents of a JSON string (without
// quotes, already validated by scanner.str) to dst. Unpaired surrogates
// become U+FFFD, as encoding/json does.
func unescapeJSON(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		e := src[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(src[i:]))
			i += 4
			if r >= 0xD800 && r < 0xDC00 {
				// High surrogate: needs a following \uDC00-\uDFFF.
				if i+6 <= len(src) && src[i] == '\\' && src[i+1] == 'u' {
					r2 := rune(hex4(src[i+2:]))
					if r2 >= 0xDC00 && r2 < 0xE000 {
						r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
						i += 6
						dst = utf8.AppendRune(dst, r)
						continue
					}
				}
				r = utf8.RuneError
			} else if r >= 0xDC00 && r < 0xE000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst
}

func hex4(b []byte) int {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}
