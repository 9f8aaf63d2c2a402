package message

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	ok := []string{
		`{"video_fid":"65a1b2c3d4e5f60718293a4b","mp3_fid":null,"username":"a@b.c"}`,
		`{"video_fid":"65a1b2c3d4e5f60718293a4b","mp3_fid":"65a1b2c3d4e5f60718293a4c","username":"a@b.c","extra":1}`,
	}
	for _, s := range ok {
		if _, err := Decode([]byte(s)); err != nil {
			t.Errorf("Decode(%s) = %v", s, err)
		}
	}
	bad := map[string]string{
		"not json":        `{"video_fid":`,
		"empty":           ``,
		"array":           `[]`,
		"missing fid":     `{"username":"a@b.c"}`,
		"short fid":       `{"video_fid":"65a1b2c3d4e5f60718293a4","username":"a@b.c"}`,
		"long fid":        `{"video_fid":"65a1b2c3d4e5f60718293a4bb","username":"a@b.c"}`,
		"non-hex fid":     `{"video_fid":"zza1b2c3d4e5f60718293a4b","username":"a@b.c"}`,
		"fid a number":    `{"video_fid":42,"username":"a@b.c"}`,
		"bad mp3 fid":     `{"video_fid":"65a1b2c3d4e5f60718293a4b","mp3_fid":"x","username":"a@b.c"}`,
		"missing user":    `{"video_fid":"65a1b2c3d4e5f60718293a4b"}`,
		"whitespace user": `{"video_fid":"65a1b2c3d4e5f60718293a4b","username":"  "}`,
	}
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte(s)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestEncodeKeepsOriginalShape(t *testing.T) {
	got := string(Conversion{VideoFID: "65a1b2c3d4e5f60718293a4b", Username: "a@b.c"}.Encode())
	want := `{"video_fid":"65a1b2c3d4e5f60718293a4b","mp3_fid":null,"username":"a@b.c"}`
	if got != want {
		t.Fatalf("Encode = %s, want %s", got, want)
	}
}

func TestFilename(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"holiday.mp4", "holiday.mp4"},
		{`C:\Users\bob\clip.avi`, "clip.avi"},
		{"../../etc/passwd", "passwd"},
		{"a\x00b\nc.mp4", "abc.mp4"},
		{strings.Repeat("é", 200), strings.Repeat("é", 127)},
		{"", ""}, {".", ""}, {"/", ""}, {"dir/", "dir"},
	} {
		if got := Filename(c.in); got != c.want {
			t.Errorf("Filename(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
