package httpx

import (
	"errors"
	"io"
)

// TrackingReader remembers the read error of a request body (any but
// io.EOF), so that a handler tells a bad or truncated body (the client's
// fault) from a failure of where it stores it.
type TrackingReader struct {
	R   io.Reader
	Err error
}

func (t *TrackingReader) Read(p []byte) (int, error) {
	n, err := t.R.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Err = err
	}
	return n, err
}
