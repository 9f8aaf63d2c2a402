package gateway

import (
	"errors"
	"net/http"

	"mp3converter/internal/authclient"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/httpx"
	"mp3converter/internal/jobs"
	"mp3converter/internal/mq"
)

// The original's bodies, kept exactly.
const (
	bodyOneFile     = "exactly 1 file required"
	bodyFIDRequired = "fid is required"
	bodySuccess     = "success!"
)

// errStorage marks a failure of MongoDB (not of the client's input).
var errStorage = errors.New("storage unavailable")

// responder maps errors to what clients see, in one table. (Auth's
// refusals and failures arrive as *httpx.StatusError, with auth's status or
// 502, and pass through.)
var responder = httpx.Responder{Rules: []httpx.ErrorRule{
	{Err: authclient.ErrUnavailable, Status: http.StatusServiceUnavailable, Body: "auth service unavailable, try again later"},
	{Err: mq.ErrUnavailable, Status: http.StatusServiceUnavailable, Body: "could not queue the conversion, try again later"},
	{Err: mq.ErrClosed, Status: http.StatusServiceUnavailable, Body: "could not queue the conversion, try again later"},
	{Err: gridfs.ErrNotFound, Status: http.StatusNotFound, Body: "not found"},
	{Err: jobs.ErrNotFound, Status: http.StatusNotFound, Body: "not found"},
	{Err: errStorage, Status: http.StatusServiceUnavailable, Body: "storage unavailable, try again later"},
}}

func isStatus(err error) bool {
	var se *httpx.StatusError
	return errors.As(err, &se)
}
