package config

import (
	"errors"
	"strings"
	"testing"
)

type checked struct {
	Port int `env:"TEST_CONFIG_PORT" envDefault:"8080"`
}

func (c checked) Validate() error {
	return errors.Join(CheckPort("TEST_CONFIG_PORT", c.Port), CheckBaseURL("TEST_CONFIG_URL", "mp3.example.com"))
}

func TestLoadValidates(t *testing.T) {
	t.Setenv("TEST_CONFIG_PORT", "70000")
	_, err := Load[checked]()
	if err == nil || !strings.Contains(err.Error(), "TEST_CONFIG_PORT 70000") || !strings.Contains(err.Error(), "TEST_CONFIG_URL") {
		t.Fatalf("Load = %v, want both errors", err)
	}
	if _, err := LoadFrom[checked](map[string]string{"TEST_CONFIG_PORT": "70000"}); err != nil {
		t.Fatalf("LoadFrom validated: %v", err)
	}
}

func TestCheckBaseURL(t *testing.T) {
	for s, ok := range map[string]bool{
		"": true, "https://mp3.example.com": true, "http://127.0.0.1:8080/": true,
		"mp3.example.com": false, "ftp://x": false, "https://x/?a=1": false, "https://x/#f": false, "https://x/\u2028": false,
	} {
		if err := CheckBaseURL("PUBLIC_URL", s); (err == nil) != ok {
			t.Errorf("CheckBaseURL(%q) = %v", s, err)
		}
	}
}
