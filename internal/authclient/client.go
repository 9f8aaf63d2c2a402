// Package authclient is the gateway's client for the auth service: it
// forwards logins and validates bearer tokens synchronously, with one pooled
// HTTP client and a bounded time per call.
package authclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
	"mp3converter/internal/token"
)

// ErrUnavailable means auth could not be reached, did not answer in time,
// or answered 503.
var ErrUnavailable = errors.New("auth service unavailable")

// ErrFailed means auth answered with a 5xx other than 503: it is up, but
// failed the request (the original auth answers 500 when it crashes). The
// errors that match it are *FailedError, with auth's status.
var ErrFailed = errors.New("auth service failed")

// FailedError is auth's answer with a 5xx status other than 503.
type FailedError struct {
	Path   string // "/login" or "/validate"
	Status int
	Body   string // the start of auth's body, for the log
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("%s: %s answered %d %q", ErrFailed, e.Path, e.Status, e.Body)
}

// Is makes errors.Is(err, ErrFailed) true.
func (e *FailedError) Is(target error) bool { return target == ErrFailed }

// Client calls auth at http://AUTH_SVC_ADDRESS.
type Client struct {
	base         string
	http         *http.Client
	timeout      time.Duration
	loginTimeout time.Duration
}

// New returns a client for addr (host:port, the original's AUTH_SVC_ADDRESS).
// A validation takes at most timeout; a login at most loginTimeout, which
// is longer: a login costs a bcrypt comparison, and auth runs one per CPU,
// so a burst of logins queues there.
func New(addr string, timeout, loginTimeout time.Duration) (*Client, error) {
	if addr == "" || strings.Contains(addr, "/") {
		return nil, fmt.Errorf("auth address %q: want host:port", addr)
	}
	if timeout <= 0 || loginTimeout <= 0 {
		return nil, fmt.Errorf("auth timeouts %s, %s must be positive", timeout, loginTimeout)
	}
	tr := &http.Transport{
		Proxy:                 nil,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: max(timeout, loginTimeout),
	}
	tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	return &Client{base: "http://" + addr, http: &http.Client{Transport: tr, Timeout: max(timeout, loginTimeout)},
		timeout: timeout, loginTimeout: loginTimeout}, nil
}

// Response is auth's answer to a login, passed back to the client as is.
type Response struct {
	Status     int
	Body       []byte
	RetryAfter string
}

// Login forwards the client's Authorization header (Basic credentials) to
// auth's /login. clientAddr goes in X-Forwarded-For so auth's rate limit sees
// the real client.
func (c *Client) Login(ctx context.Context, authorization, clientAddr string) (Response, error) {
	resp, err := c.post(ctx, c.loginTimeout, "/login", authorization, clientAddr)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Response{}, fmt.Errorf("%w: read login response: %w", ErrUnavailable, err)
	}
	if err := serverError("/login", resp.StatusCode, body); err != nil {
		return Response{}, err
	}
	return Response{Status: resp.StatusCode, Body: body, RetryAfter: resp.Header.Get("Retry-After")}, nil
}

// Validate asks auth whether the Authorization header holds a valid bearer
// token. A header without one (absent, another scheme, "Bearer" and
// nothing else) is refused here with auth's 401 "missing credentials":
// the original auth crashes on it. Auth is sent "Bearer <token>" with one
// space, as the original auth parses it. Auth's refusals (401, 403) come
// back as *httpx.StatusError with its status and body, so the gateway
// passes them through unchanged.
func (c *Client) Validate(ctx context.Context, authorization string) (token.Claims, error) {
	tok, ok := token.FromHeader(authorization)
	if !ok {
		return token.Claims{}, httpx.Status(http.StatusUnauthorized, "missing credentials")
	}
	resp, err := c.post(ctx, c.timeout, "/validate", "Bearer "+tok, "")
	if err != nil {
		return token.Claims{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return token.Claims{}, fmt.Errorf("%w: read validate response: %w", ErrUnavailable, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		var claims token.Claims
		if err := json.Unmarshal(body, &claims); err != nil || claims.Username == "" {
			return token.Claims{}, fmt.Errorf("%w: validate answered 200 with %q", ErrUnavailable, logging.Clip(string(body), 200))
		}
		return claims, nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return token.Claims{}, httpx.Status(resp.StatusCode, string(body))
	case resp.StatusCode >= 500:
		return token.Claims{}, serverError("/validate", resp.StatusCode, body)
	default:
		return token.Claims{}, fmt.Errorf("%w: validate answered %d %q", ErrUnavailable, resp.StatusCode, logging.Clip(string(body), 200))
	}
}

// Ready reports whether auth is up: any answer to GET /healthz below 500
// proves it. Go auth answers 200; the original auth has no /healthz and
// answers 404, which proves as much. No answer in time, or a 5xx, is not
// ready. Not auth's /readyz: that fails while auth's MySQL is down, but
// validations, all the gateway needs for uploads and downloads, go on
// without MySQL.
func (c *Client) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%w: healthz answered %d", ErrUnavailable, resp.StatusCode)
	}
	return nil
}

// serverError is what a 5xx from auth means: 503 (auth says it cannot
// serve now, e.g. its MySQL is down) is ErrUnavailable; any other 5xx is
// answered 502 with a sentence naming auth's status (so a client or an
// operator can tell auth's own failure from an outage), its cause a
// *FailedError with auth's body, for the log. Below 500 it is nil.
func serverError(path string, status int, body []byte) error {
	switch {
	case status == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %s answered %d %q", ErrUnavailable, path, status, logging.Clip(string(body), 200))
	case status >= 500:
		return &httpx.StatusError{Status: http.StatusBadGateway,
			Body: fmt.Sprintf("auth service error (it answered %d)", status),
			Err:  &FailedError{Path: path, Status: status, Body: logging.Clip(string(body), 200)}}
	}
	return nil
}

func (c *Client) post(ctx context.Context, timeout time.Duration, path, authorization, clientAddr string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("build request: %w", err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if clientAddr != "" {
		req.Header.Set("X-Forwarded-For", clientAddr)
	}
	if id := httpx.RequestID(ctx); id != "" {
		req.Header.Set(httpx.RequestIDHeader, id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: POST %s: %w", ErrUnavailable, path, err)
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
