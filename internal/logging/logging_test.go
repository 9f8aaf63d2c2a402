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

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 bytes", 1023: "1023 bytes", 1 << 20: "1 MiB", 300 << 20: "300 MiB",
		3 << 29: "1.5 GiB", 4 << 30: "4 GiB", 1<<20 + 1<<19: "1.5 MiB",
	} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
