package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadGossipKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("EDDY_GOSSIP_KEY", "")
	if k, err := readGossipKey(""); err != nil || k != nil {
		t.Fatalf("no file, no env: %v %v; want no key", k, err)
	}
	k, err := readGossipKey(write("k32", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"))
	if err != nil || string(k) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("32-byte key file: %q %v", k, err)
	}
	t.Setenv("EDDY_GOSSIP_KEY", "MDEyMzQ1Njc4OWFiY2RlZg==")
	if k, err := readGossipKey(""); err != nil || len(k) != 16 {
		t.Fatalf("16-byte key from env: %q %v", k, err)
	}
	for text, want := range map[string]string{"c2hvcnQ=": "key is 5 bytes", "not base64!!": "not base64", "": "is empty"} {
		_, err := readGossipKey(write("bad", text))
		if err == nil || !strings.Contains(err.Error(), want) || (text != "" && strings.Contains(err.Error(), text)) {
			t.Errorf("key %q: error %v; want one saying %q without the key", text, err, want)
		}
	}
}
