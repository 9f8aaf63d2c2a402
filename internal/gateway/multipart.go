package gateway

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"

	"mp3converter/internal/httpx"
)

// Limits of an upload's multipart envelope.
const (
	maxPartHeaderBytes = 32 << 10 // a part's headers (the multipart package's own limit is 10 MiB)
	maxFieldBytes      = 64 << 10 // a form field that is not the file
)

var errPartHeaders = fmt.Errorf("part headers longer than %d KiB", maxPartHeaderBytes>>10)

// multipartReader is http.Request.MultipartReader over a budget: while
// the budget is limited (around NextPart), at most that many bytes (plus
// the reader's 4 KiB read-ahead) may be read, so a part's headers cannot
// grow to the multipart package's 10 MiB per upload.
func multipartReader(r *http.Request) (*multipart.Reader, *readBudget, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, nil, http.ErrNotMultipart
	}
	b := &readBudget{r: r.Body, left: -1}
	return multipart.NewReader(b, params["boundary"]), b, nil
}

// readBudget reads from r, at most left bytes while left ≥ 0.
type readBudget struct {
	r    io.Reader
	left int64
}

// limit sets the budget: n bytes plus read-ahead, or none (n < 0).
func (b *readBudget) limit(n int64) {
	if n >= 0 {
		n += 8 << 10 // the multipart reader's read-ahead, and the boundary line
	}
	b.left = n
}

func (b *readBudget) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, errPartHeaders
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	return n, err
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return httpx.Status(http.StatusRequestEntityTooLarge, "file too large")
	}
	if errors.Is(err, errPartHeaders) {
		return &httpx.StatusError{Status: http.StatusBadRequest, Body: "malformed multipart body: " + errPartHeaders.Error(), Err: err}
	}
	var se *httpx.StatusError
	if errors.As(err, &se) {
		return err
	}
	return &httpx.StatusError{Status: http.StatusBadRequest, Body: "malformed or incomplete multipart body", Err: err}
}
