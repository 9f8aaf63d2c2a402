// Package config loads a service's configuration from environment variables.
//
// Every binary declares one Config struct with `env` and `envDefault` tags
// (github.com/caarlos0/env) and calls Load at start; a missing required value
// fails fast with an error that names the variable.
package config

import (
	"fmt"
	"log/slog"

	"github.com/caarlos0/env/v11"
)

// Load fills a T from the process environment.
func Load[T any]() (T, error) {
	cfg, err := env.ParseAs[T]()
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// LoadFrom fills a T from the given variables instead of the process
// environment; tests use it.
func LoadFrom[T any](vars map[string]string) (T, error) {
	cfg, err := env.ParseAsWithOptions[T](env.Options{Environment: vars})
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// Secret is a string that never prints: fmt, %v and slog all show it masked.
type Secret string

// String masks the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "********"
}

// LogValue masks the value in structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Reveal returns the real value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }
