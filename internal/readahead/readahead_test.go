package readahead

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"mp3converter/internal/testenv"
)

var errTest = errors.New("test error")

func TestReadAhead(t *testing.T) {
	data := make([]byte, 1<<20+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	ra := New(iotest.HalfReader(bytes.NewReader(data)), 3, 1000)
	got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(ra, 5000)))
	if err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(ra)
	if err != nil || !bytes.Equal(append(got, rest...), data) {
		t.Fatalf("read-ahead changed the data (err %v)", err)
	}
	ra.Close()

	// The source's error comes after its bytes.
	ra = New(io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(errTest)), 2, 4)
	got, err = io.ReadAll(ra)
	if !bytes.Equal(got, data[:10]) || err != errTest {
		t.Fatalf("got %d bytes, %v; want 10 bytes then the source's error", len(got), err)
	}
	ra.Close()

	// Close with the buffers full and nobody reading returns.
	ra = New(bytes.NewReader(data), 2, 10)
	testenv.Eventually(t, 5*time.Second, "both buffers filled", func() bool { return len(ra.full) == cap(ra.full) })
	done := make(chan struct{})
	go func() { ra.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked")
	}
}
