// Package logging builds the JSON slog logger every binary passes down,
// and carries the logger of one request or message in its context.
package logging

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// Config is the logging piece of every service's configuration.
type Config struct {
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

// Level is LOG_LEVEL, for New.
func (c Config) Level() string { return c.LogLevel }

// New returns a JSON logger writing to w at the given level ("debug",
// "info", "warn", "error"; empty means info), tagged with service and version.
func New(w io.Writer, service, version, level string) (*slog.Logger, error) {
	var lv slog.Level
	if strings.TrimSpace(level) != "" {
		if err := lv.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("LOG_LEVEL %q: %w", level, err)
		}
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})
	return slog.New(h).With("service", service, "version", version), nil
}

type ctxKey struct{}

// discard is the logger of a context that carries none.
var discard = slog.New(slog.DiscardHandler)

// From returns the logger stored in ctx (with the request or message IDs
// of what is being handled), or one that discards.
func From(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok {
		return l
	}
	return discard
}

// Into stores l in ctx: the HTTP middleware and the consumers do it for
// each request and message.
func Into(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// NewID returns a random 16-hex-digit identifier (request and message IDs).
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Bytes is n in the largest binary unit that keeps it readable, for a
// log line or an error text: "512 bytes", "300 MiB", "1.5 GiB".
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', -1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', -1, 64) + " MiB"
	default:
		return strconv.FormatInt(n, 10) + " bytes"
	}
}

// Clip shortens s to at most max bytes for a log line or an error text,
// cutting on a rune boundary and marking the cut with "…"; bytes that are
// not UTF-8 (a binary message body) are dropped.
func Clip(s string, max int) string {
	if len(s) <= max {
		return strings.ToValidUTF8(s, "")
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}
