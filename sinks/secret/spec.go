package secret

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// PasswordKey is the YAML key whose value RedactSpec masks, at any depth
// and in any letter case (a job spec's source.sasl.password).
const PasswordKey = "password"

// RedactSpec returns a YAML job spec (or any YAML text) with its passwords
// masked: the value of every mapping key named PasswordKey, unless it is
// only a reference to the environment ("${KAFKA_PASSWORD}", kept as
// written), and every DSN or URL password (RedactText). The rest of the
// text is returned byte for byte (comments, quotes, layout); a value that
// cannot be replaced in place (block scalar, alias, tag) makes the whole
// document re-encoded with yaml.v3 (comments kept, 2-space indent). Text
// that is not YAML has every "password: VALUE" line masked.
func RedactSpec(s string) string {
	return RedactText(redactYAMLPasswords(s))
}

type span struct{ from, to int }

func redactYAMLPasswords(s string) string {
	if !strings.Contains(strings.ToLower(s), PasswordKey) {
		return s
	}
	var docs []*yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(s))
	for {
		var d yaml.Node
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return redactPasswordLines(s)
		}
		docs = append(docs, &d)
	}
	var found []*yaml.Node
	inPlace := true
	for _, d := range docs {
		walkPasswords(d, func(v *yaml.Node, alias bool) {
			found = append(found, v)
			inPlace = inPlace && !alias
		})
	}
	if len(found) == 0 {
		return s
	}
	var spans []span
	if inPlace {
		lines := lineStarts(s)
		for _, v := range found {
			sp, ok := tokenSpan(s, lines, v)
			if !ok {
				inPlace = false
				break
			}
			spans = append(spans, sp)
		}
	}
	if !inPlace {
		for _, v := range found {
			v.Value, v.Style, v.Tag = Mask, 0, "!!str"
		}
		var b bytes.Buffer
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		for _, d := range docs {
			if enc.Encode(d) != nil {
				return redactPasswordLines(s)
			}
		}
		_ = enc.Close()
		return b.String()
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from > spans[j].from })
	for i, sp := range spans {
		if i > 0 && sp.to > spans[i-1].from {
			continue // the same node twice
		}
		s = s[:sp.from] + Mask + s[sp.to:]
	}
	return s
}

// walkPasswords calls fn with every scalar value of a PasswordKey key that
// is a secret; alias reports that it was reached through an alias.
func walkPasswords(n *yaml.Node, fn func(v *yaml.Node, alias bool)) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			walkPasswords(c, fn)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && strings.EqualFold(k.Value, PasswordKey) {
				alias := false
				if v.Kind == yaml.AliasNode && v.Alias != nil {
					v, alias = v.Alias, true
				}
				if v.Kind == yaml.ScalarNode && v.Value != "" && !envRef.MatchString(v.Value) {
					fn(v, alias)
				}
				continue
			}
			walkPasswords(v, fn)
		}
	}
}

func lineStarts(s string) []int {
	starts := []int{0}
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// tokenSpan finds the source bytes of a one-line scalar v (plain, single-
// or double-quoted); ok is false for anything else.
func tokenSpan(s string, lines []int, v *yaml.Node) (span, bool) {
	if v.Line < 1 || v.Line > len(lines) || v.Column < 1 || v.Anchor != "" {
		return span{}, false
	}
	off := lines[v.Line-1]
	for c := 1; c < v.Column; c++ { // yaml.v3 columns count characters
		if off >= len(s) || s[off] == '\n' {
			return span{}, false
		}
		_, w := utf8.DecodeRuneInString(s[off:])
		off += w
	}
	rest := s[off:]
	if nl := strings.IndexByte(rest, '\n'); nl >= 0 {
		rest = rest[:nl]
	}
	switch {
	case v.Style&yaml.DoubleQuotedStyle != 0 && strings.HasPrefix(rest, `"`):
		for i := 1; i < len(rest); i++ {
			switch rest[i] {
			case '\\':
				i++
			case '"':
				return span{off, off + i + 1}, true
			}
		}
	case v.Style&yaml.SingleQuotedStyle != 0 && strings.HasPrefix(rest, `'`):
		for i := 1; i < len(rest); i++ {
			if rest[i] == '\'' {
				if i+1 < len(rest) && rest[i+1] == '\'' {
					i++
					continue
				}
				return span{off, off + i + 1}, true
			}
		}
	case v.Style == 0 && strings.HasPrefix(rest, v.Value):
		return span{off, off + len(v.Value)}, true
	}
	return span{}, false
}

// passwordLine matches "password: VALUE" (also as a list item or flow
// entry) in text that is not YAML.
var passwordLine = regexp.MustCompile(`(?i)((?:^|[\s{,\-])password\s*:[ \t]*)("[^"\n]*"|'[^'\n]*'|[^\s,}\n]+)`)

func redactPasswordLines(s string) string {
	return passwordLine.ReplaceAllStringFunc(s, func(m string) string {
		sm := passwordLine.FindStringSubmatch(m)
		if envRef.MatchString(strings.Trim(sm[2], `"'`)) {
			return m
		}
		return sm[1] + Mask
	})
}
