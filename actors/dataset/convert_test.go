package dataset

import (
	"encoding/json"
	"testing"
)

func TestAppendNumberOrString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"11.87", `11.87`},
		{"2.50", `2.50`}, // valid JSON number: kept as written
		{"-2.088", `-2.088`},
		{"0", `0`},
		{"17079", `17079`},
		{"1e3", `1e3`},
		{"1.5E-2", `1.5E-2`},
		{" 12.5 ", `12.5`}, // surrounding white space trimmed
		{"\t7\n", `7`},
		{"+5", `5`}, // decimal but not JSON syntax: canonical form
		{".5", `0.5`},
		{"5.", `5`},
		{"007", `7`},
		{"-0", `-0`},
		{"1e400", `"1e400"`}, // overflows to Inf: not finite
		{"", `""`},
		{"   ", `"   "`},
		{"abc", `"abc"`},
		{"NaN", `"NaN"`},
		{"nan", `"nan"`},
		{"Inf", `"Inf"`},
		{"-Infinity", `"-Infinity"`},
		{"0x10", `"0x10"`}, // hex is not a decimal number
		{"1_000", `"1_000"`},
		{"1,5", `"1,5"`},
		{"12.5 µg", `"12.5 µg"`},
		{"1e", `"1e"`},
		{".", `"."`},
		{"-", `"-"`},
	} {
		got := string(appendNumberOrString(nil, tc.in))
		if got != tc.want {
			t.Errorf("appendNumberOrString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("appendNumberOrString(%q) = %s: not valid JSON", tc.in, got)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"17079", `"17079"`},
		{`say "hi"`, `"say \"hi\""`},
		{`a\b`, `"a\\b"`},
		{"tab\tnl\ncr\r", `"tab\tnl\ncr\r"`},
		{"\x00\x1f", `"\u0000\u001f"`},
		{"Aberdeen µg/m³ – ok", `"Aberdeen µg/m³ – ok"`},
		{"bad\xffutf8", `"bad\ufffdutf8"`},
		{"</script>", `"</script>"`},
	} {
		got := string(appendJSONString(nil, tc.in))
		if got != tc.want {
			t.Errorf("appendJSONString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		var back string
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Errorf("appendJSONString(%q) = %s: %v", tc.in, got, err)
		}
	}
}

// FuzzAppendJSONString: any input gives a valid JSON string that decodes
// to the input (invalid UTF-8 replaced by U+FFFD, as encoding/json does).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\\", "\x00", "µ", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q → %s: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Fatalf("%q → %s decodes to %q, want %q", s, got, back, wantBack)
		}
	})
}

// FuzzAppendNumberOrString: the result is always valid JSON; a number only
// when the trimmed text is a decimal number.
func FuzzAppendNumberOrString(f *testing.F) {
	for _, s := range []string{"1", " 2.5", "+.5e-3", "NaN", "0x1p3", "1e999", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendNumberOrString(nil, s)
		if !json.Valid(got) {
			t.Fatalf("%q → %s: not valid JSON", s, got)
		}
	})
}
