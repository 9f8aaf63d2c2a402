// Package logging builds the JSON slog logger every binary passes down.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

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
