package logging

import (
	"strings"
	"testing"
)

func TestClip(t *testing.T) {
	const max = 1000
	long := "x" + strings.Repeat("é", max) // the cut at an even byte falls inside a rune
	s := Clip(long, max)
	if len(s) > max+len("…") || !strings.HasSuffix(s, "…") {
		t.Errorf("Clip kept %d bytes", len(s))
	}
	if !strings.HasPrefix(long, strings.TrimSuffix(s, "…")) {
		t.Error("Clip is not a prefix of the text")
	}
	if got := Clip("short", max); got != "short" {
		t.Errorf("Clip(short) = %q", got)
	}
	if got := Clip("bin\xff\xfeary", max); got != "binary" {
		t.Errorf("Clip of invalid UTF-8 = %q, want the valid bytes", got)
	}
}
