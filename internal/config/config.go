// Package config loads a service's configuration from environment variables.
//
// Every binary declares one Config struct with `env` and `envDefault` tags
// (github.com/caarlos0/env) and calls Load at start; a missing required value
// fails fast with an error that names the variable.
package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"
)

// Validator is a configuration that checks itself: Validate reports every
// bad value (errors.Join), each error naming its variable, and changes
// nothing.
type Validator interface{ Validate() error }

// Load fills a T from the process environment and, when T is a Validator,
// validates it: a binary starts only with a configuration it can run with.
func Load[T any]() (T, error) {
	cfg, err := env.ParseAs[T]()
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if v, ok := any(cfg).(Validator); ok {
		if err := v.Validate(); err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
	}
	return cfg, nil
}

// LoadFrom fills a T from the given variables instead of the process
// environment, without validating (tests check Validate themselves, or
// build partial configurations).
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

// CheckPort reports a port outside 0-65535 (0: any free port, which tests
// use) as an error naming the variable.
func CheckPort(name string, port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("%s %d: want 1-65535", name, port)
	}
	return nil
}

// CheckBaseURL reports a base URL for links (PUBLIC_URL) that is set but
// not an absolute http(s) URL without query or fragment, or that holds
// control characters (it ends up in headers and emails).
func CheckBaseURL(name, s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" ||
		!utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }) {
		return fmt.Errorf("%s %q: want an absolute http(s) URL such as https://mp3.example.com", name, s)
	}
	return nil
}
