package gridfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks compare this package with the driver's GridFS bucket on the same
// server and bytes:
//
//	source .run/env && go test -run '^$' -bench . -benchtime 3x ./internal/gridfs/

const benchSize = 64 << 20 // under the ≈72 MiB the driver's download survives on FerretDB

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }

func BenchmarkUpload(b *testing.B) {
	bk, db := newBucket(b)
	gb := db.GridFSBucket()
	ctx := context.Background()
	data := content(benchSize, 1)
	var ours, raw time.Duration
	i := 0
	for b.Loop() {
		uploadOurs := func() {
			t0 := time.Now()
			info, err := bk.Upload(ctx, "bench", bytes.NewReader(data), nil, UploadOptions{})
			if err != nil {
				b.Fatal(err)
			}
			ours += time.Since(t0)
			b.StopTimer()
			if err := bk.Delete(ctx, info.ID); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		uploadRaw := func() {
			t0 := time.Now()
			id, err := gb.UploadFromStream(ctx, "bench", bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			raw += time.Since(t0)
			b.StopTimer()
			if err := gb.Delete(ctx, id); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if i%2 == 0 {
			uploadOurs()
			uploadRaw()
		} else {
			uploadRaw()
			uploadOurs()
		}
		i++
	}
	n := int64(i) * benchSize
	b.ReportMetric(mbps(n, ours), "ours_MB/s")
	b.ReportMetric(mbps(n, raw), "driver_MB/s")
	b.ReportMetric(raw.Seconds()/ours.Seconds(), "ratio")
}

func BenchmarkDownload(b *testing.B) {
	bk, db := newBucket(b)
	gb := db.GridFSBucket()
	ctx := context.Background()
	info, err := bk.Upload(ctx, "bench", bytes.NewReader(content(benchSize, 2)), nil, UploadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var ours, raw time.Duration
	i := 0
	for b.Loop() {
		downloadOurs := func() {
			t0 := time.Now()
			rc, _, err := bk.Open(ctx, info.ID, 0)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, rc); err != nil || n != benchSize {
				b.Fatalf("ours: %d bytes, %v", n, err)
			}
			rc.Close()
			ours += time.Since(t0)
		}
		downloadRaw := func() {
			t0 := time.Now()
			ds, err := gb.OpenDownloadStream(ctx, info.ID)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, ds); err != nil || n != benchSize {
				b.Fatalf("driver: %d bytes, %v", n, err)
			}
			ds.Close()
			raw += time.Since(t0)
		}
		if i%2 == 0 {
			downloadOurs()
			downloadRaw()
		} else {
			downloadRaw()
			downloadOurs()
		}
		i++
	}
	n := int64(i) * benchSize
	b.ReportMetric(mbps(n, ours), "ours_MB/s")
	b.ReportMetric(mbps(n, raw), "driver_MB/s")
	b.ReportMetric(raw.Seconds()/ours.Seconds(), "ratio")
}

// genReader produces n pseudo-random bytes without holding them.
type genReader struct {
	src *rand.ChaCha8
	n   int64
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), g.n)]
	_, _ = g.src.Read(p)
	g.n -= int64(len(p))
	return len(p), nil
}

// heapPeak samples HeapInuse until stop is called, and returns the peak.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// BenchmarkLargeFileHeap uploads and downloads files of 32 and 256 MiB
// through the Bucket and reports the peak heap in use (garbage included)
// during each: it stays flat, far below the file size.
func BenchmarkLargeFileHeap(b *testing.B) {
	for _, size := range []int64{32 << 20, 256 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) { benchHeap(b, size) })
	}
}

func benchHeap(b *testing.B, size int64) {
	bk, _ := newBucket(b)
	ctx := context.Background()
	for b.Loop() {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		base := m.HeapInuse

		src := &genReader{src: rand.NewChaCha8([32]byte{9}), n: size}
		h := sha256.New()
		stop := heapPeak()
		t0 := time.Now()
		info, err := bk.Upload(ctx, "large", io.TeeReader(src, h), nil, UploadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		up, upPeak := time.Since(t0), stop()
		want := h.Sum(nil)

		runtime.GC()
		stop = heapPeak()
		t0 = time.Now()
		rc, _, err := bk.Open(ctx, info.ID, 0)
		if err != nil {
			b.Fatal(err)
		}
		h.Reset()
		n, err := io.Copy(h, rc)
		rc.Close()
		down, downPeak := time.Since(t0), stop()
		if err != nil || n != size || !bytes.Equal(h.Sum(nil), want) {
			b.Fatalf("download: %d bytes, %v, sha256 equal %v", n, err, bytes.Equal(h.Sum(nil), want))
		}
		if err := bk.Delete(ctx, info.ID); err != nil {
			b.Fatal(err)
		}
		b.Logf("%d MiB: upload %.1f MB/s, peak heap %.1f MiB (baseline %.1f); download %.1f MB/s, peak heap %.1f MiB",
			size>>20, mbps(size, up), float64(upPeak)/(1<<20), float64(base)/(1<<20), mbps(size, down), float64(downPeak)/(1<<20))
		b.ReportMetric(float64(upPeak)/(1<<20), "upload_peak_heap_MiB")
		b.ReportMetric(float64(downPeak)/(1<<20), "download_peak_heap_MiB")
	}
}

// BenchmarkDriverDownloadLarge records what the driver's own GridFS download
// does with a 100 MiB file of 255 KiB chunks (on FerretDB v1.24: fails after
// ≈26 MiB with "length of read message too large", as a getMore without
// batchSize returns 250 chunks), beside this package's reader of the file.
func BenchmarkDriverDownloadLarge(b *testing.B) {
	const size = 100 << 20
	bk, db := newBucket(b)
	ctx := context.Background()
	info, err := bk.Upload(ctx, "big", &genReader{src: rand.NewChaCha8([32]byte{3}), n: size}, nil, UploadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		t0 := time.Now()
		rc, _, err := bk.Open(ctx, info.ID, 0)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != size {
			b.Fatalf("ours: %d bytes, %v", n, err)
		}
		b.ReportMetric(mbps(size, time.Since(t0)), "ours_MB/s")

		ds, err := db.GridFSBucket().OpenDownloadStream(ctx, info.ID)
		if err != nil {
			b.Fatal(err)
		}
		dn, derr := io.Copy(io.Discard, ds)
		ds.Close()
		b.Logf("driver download of %d MiB: %d bytes, err %v", size>>20, dn, derr)
		failed := 0.0
		if derr != nil {
			failed = 1
		}
		b.ReportMetric(failed, "driver_failed")
	}
}
