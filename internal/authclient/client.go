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
	"mp3converter/internal/token"
)

// ErrUnavailable means auth did not answer in time or answered with a 5xx.
var ErrUnavailable = errors.New("auth service unavailable")

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
	if resp.StatusCode >= 500 {
		return Response{}, fmt.Errorf("%w: login answered %d", ErrUnavailable, resp.StatusCode)
	}
	return Response{Status: resp.StatusCode, Body: body, RetryAfter: resp.Header.Get("Retry-After")}, nil
}

// Validate asks auth whether the Authorization header holds a valid bearer
// token. Auth's refusals (401, 403) come back as *httpx.StatusError with its
// status and body, so the gateway passes them through unchanged.
func (c *Client) Validate(ctx context.Context, authorization string) (token.Claims, error) {
	if authorization == "" {
		return token.Claims{}, httpx.Status(http.StatusUnauthorized, "missing credentials")
	}
	resp, err := c.post(ctx, c.timeout, "/validate", authorization, "")
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
			return token.Claims{}, fmt.Errorf("%w: validate answered 200 with %q", ErrUnavailable, truncate(body))
		}
		return claims, nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return token.Claims{}, httpx.Status(resp.StatusCode, string(body))
	default:
		return token.Claims{}, fmt.Errorf("%w: validate answered %d %q", ErrUnavailable, resp.StatusCode, truncate(body))
	}
}

// Ready reports whether auth is up (its /healthz). Not its /readyz: that
// fails while auth's MySQL is down, but validations, all the gateway needs
// for uploads and downloads, go on without MySQL.
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
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: healthz answered %d", ErrUnavailable, resp.StatusCode)
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

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
