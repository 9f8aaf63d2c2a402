package mq

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestAttempts(t *testing.T) {
	tests := []struct {
		name string
		h    amqp.Table
		want int
	}{
		{"no headers", nil, 1},
		{"absent", amqp.Table{"other": "x"}, 1},
		{"int32 as we write it", amqp.Table{HeaderAttempts: int32(3)}, 3},
		{"int64", amqp.Table{HeaderAttempts: int64(4)}, 4},
		{"uint8", amqp.Table{HeaderAttempts: uint8(2)}, 2},
		{"float from another client", amqp.Table{HeaderAttempts: float64(5)}, 5},
		{"string", amqp.Table{HeaderAttempts: "6"}, 6},
		{"garbage string", amqp.Table{HeaderAttempts: "many"}, 1},
		{"zero", amqp.Table{HeaderAttempts: int32(0)}, 1},
		{"negative", amqp.Table{HeaderAttempts: int64(-2)}, 1},
		{"wrong type", amqp.Table{HeaderAttempts: []byte("3")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := attempts(tt.h); got != tt.want {
				t.Errorf("attempts(%v) = %d, want %d", tt.h, got, tt.want)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	const base, limit = 100 * time.Millisecond, time.Second
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{1000, time.Second},
	}
	for _, tt := range tests {
		if got := retryDelay(base, limit, tt.attempt); got != tt.want {
			t.Errorf("retryDelay(attempt %d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
}

func TestToTable(t *testing.T) {
	h := toTable(map[string]any{
		"s":      "x",
		"nested": map[string]any{"n": int32(1), "list": []string{"a", "b"}},
	})
	if err := h.Validate(); err != nil {
		t.Fatalf("converted headers are not valid AMQP: %v", err)
	}
	if toTable(nil) != nil {
		t.Error("toTable(nil) != nil")
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	_, err := New("http://user:secret@host/", discardLogger(), Options{})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("New(bad url) = %v, want an error without the password", err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
