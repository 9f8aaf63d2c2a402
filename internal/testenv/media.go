package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// CachedVideo returns the path of the benchmarks' video name, kept in the
// user's cache directory (mp3converter-bench) between runs because making
// one takes minutes: the first time, ffmpeg makes it with args (the
// output's path is appended), under a temporary name renamed once whole,
// so that an interrupted run leaves nothing to reuse.
func CachedVideo(t testing.TB, name string, args ...string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "mp3converter-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if st, err := os.Stat(p); err == nil {
		t.Logf("reusing %s (%.1f MB)", p, float64(st.Size())/1e6)
		return p
	}
	t0 := time.Now()
	part := filepath.Join(dir, "part-"+name) // keeps the extension: ffmpeg picks the container by it
	args = append(append([]string{"-nostdin", "-v", "error", "-y"}, args...), part)
	if out, err := exec.Command(Getenv(t, "FFMPEG_PATH"), args...).CombinedOutput(); err != nil {
		os.Remove(part)
		t.Fatalf("make %s: %v: %s", name, err, out)
	}
	if err := os.Rename(part, p); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	t.Logf("made %s (%.1f MB) in %s", p, float64(st.Size())/1e6, time.Since(t0).Round(time.Second))
	return p
}

// Video writes name in a temporary directory: an MP4 as ffmpeg writes it by
// default (H.264 and AAC, its index at the end) of the given seconds, a test
// pattern of size ("320x240") at rate frames per second with a 440 Hz tone.
func Video(t testing.TB, name string, seconds int, size string, rate int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	d := strconv.Itoa(seconds)
	out, err := exec.Command(Getenv(t, "FFMPEG_PATH"), "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc=size="+size+":rate="+strconv.Itoa(rate)+":duration="+d,
		"-f", "lavfi", "-i", "sine=frequency=440:duration="+d,
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", p).CombinedOutput()
	if err != nil {
		t.Fatalf("make video: %v\n%s", err, out)
	}
	return p
}

// Probe is what ffprobe says of a media file.
type Probe struct {
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
	Streams []struct {
		CodecName string `json:"codec_name"`
		CodecType string `json:"codec_type"`
	} `json:"streams"`
}

// Seconds is the file's duration.
func (p Probe) Seconds() float64 {
	d, _ := strconv.ParseFloat(p.Format.Duration, 64)
	return d
}

// FFprobe runs FFPROBE_PATH on path.
func FFprobe(t testing.TB, path string) Probe {
	t.Helper()
	out, err := exec.Command(Getenv(t, "FFPROBE_PATH"), "-v", "error", "-print_format", "json",
		"-show_format", "-show_streams", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var p Probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	return p
}
