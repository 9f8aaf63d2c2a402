package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Mailpit is a Mailpit server: SMTP for the code under test, and the HTTP
// API through which a test reads the mail that arrived.
type Mailpit struct {
	SMTPHost string
	SMTPPort int
	API      string // base URL of the HTTP API, without a trailing slash
}

// MailpitShared returns the stack's Mailpit (SMTP_HOST, SMTP_PORT,
// MAILPIT_URL). Other tests use it at the same time: give each test its own
// recipient addresses (MailAddress) and look mail up by recipient; never
// delete messages there.
func MailpitShared(t testing.TB) *Mailpit {
	t.Helper()
	host := Getenv(t, "SMTP_HOST")
	port, err := strconv.Atoi(Getenv(t, "SMTP_PORT"))
	if err != nil {
		t.Fatalf("SMTP_PORT: %v", err)
	}
	return &Mailpit{SMTPHost: host, SMTPPort: port, API: strings.TrimRight(Getenv(t, "MAILPIT_URL"), "/")}
}

// MailAddress returns an email address private to the test.
func MailAddress(prefix string) string { return Name(prefix) + "@example.com" }

// StartMailpit starts a Mailpit of the test's own (the binary in
// MP3_TOOLS_BIN) on free loopback ports with its database in a temporary
// directory, with the extra command-line flags given (for example
// "--smtp-require-starttls"), and stops it in t.Cleanup.
func StartMailpit(t testing.TB, flags ...string) *Mailpit {
	t.Helper()
	bin := filepath.Join(Getenv(t, "MP3_TOOLS_BIN"), "mailpit")
	var lastErr error
	for range 3 { // a free port can be taken between picking and binding it
		m, err := startMailpit(t, bin, flags)
		if err == nil {
			return m
		}
		lastErr = err
	}
	t.Fatalf("start mailpit: %v", lastErr)
	return nil
}

func startMailpit(t testing.TB, bin string, flags []string) (*Mailpit, error) {
	smtpPort, httpPort := FreePort(t), FreePort(t)
	args := append([]string{
		"--smtp", net.JoinHostPort("127.0.0.1", strconv.Itoa(smtpPort)),
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		"--database", filepath.Join(t.TempDir(), "mailpit.db"),
		"--disable-version-check", "--smtp-disable-rdns",
	}, flags...)
	// A shell runs Mailpit in the background and kills it as soon as its
	// stdin closes: at cleanup, and also when the test binary dies without
	// running its cleanups (a timeout), so no Mailpit outlives the tests.
	script := `"$0" "$@" & pid=$!; read -r _; kill "$pid"; wait "$pid"`
	cmd := exec.Command("sh", append([]string{"-c", script, bin}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out := &Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	stop := func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	m := &Mailpit{SMTPHost: "127.0.0.1", SMTPPort: smtpPort, API: "http://127.0.0.1:" + strconv.Itoa(httpPort)}
	if !Poll(15*time.Second, m.ready) {
		stop()
		return nil, fmt.Errorf("mailpit %v not ready within 15s; output:\n%s", args, out.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("mailpit %s output:\n%s", m.SMTPAddr(), out.String())
		}
	})
	return m, nil
}

func (m *Mailpit) ready() bool {
	c, err := net.DialTimeout("tcp", m.SMTPAddr(), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	resp, err := http.Get(m.API + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// SMTPAddr is host:port of the SMTP server.
func (m *Mailpit) SMTPAddr() string {
	return net.JoinHostPort(m.SMTPHost, strconv.Itoa(m.SMTPPort))
}

// MailAddr is an address in Mailpit's JSON.
type MailAddr struct {
	Name    string
	Address string
}

// MailSummary is one entry of a Mailpit message list.
type MailSummary struct {
	ID        string
	MessageID string
	From      MailAddr
	To        []MailAddr
	Subject   string
	Created   time.Time // when Mailpit received it
}

// MailMessage is one message as Mailpit parsed it.
type MailMessage struct {
	ID          string
	MessageID   string
	From        MailAddr
	To          []MailAddr
	Cc, Bcc     []MailAddr
	Subject     string
	Username    string // the SMTP AUTH username the sender logged in with
	Text        string
	HTML        string
	Attachments []json.RawMessage
	// Headers are the raw headers (from /api/v1/message/{ID}/headers).
	Headers map[string][]string
}

// Search returns the messages matching a Mailpit search query, for
// example "to:someone@example.com", newest first.
func (m *Mailpit) Search(t testing.TB, query string) []MailSummary {
	t.Helper()
	var res struct{ Messages []MailSummary }
	m.get(t, "/api/v1/search?limit=100&query="+url.QueryEscape(query), &res)
	return res.Messages
}

// To returns the messages sent to addr, newest first.
func (m *Mailpit) To(t testing.TB, addr string) []MailSummary {
	t.Helper()
	var out []MailSummary
	for _, s := range m.Search(t, "to:"+addr) {
		for _, a := range s.To {
			if strings.EqualFold(a.Address, addr) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// Message returns one message with its text, HTML and headers.
func (m *Mailpit) Message(t testing.TB, id string) MailMessage {
	t.Helper()
	var msg MailMessage
	m.get(t, "/api/v1/message/"+url.PathEscape(id), &msg)
	m.get(t, "/api/v1/message/"+url.PathEscape(id)+"/headers", &msg.Headers)
	return msg
}

// WaitFor waits up to timeout for a message to addr and returns the newest.
func (m *Mailpit) WaitFor(t testing.TB, addr string, timeout time.Duration) MailMessage {
	t.Helper()
	var list []MailSummary
	if !Poll(timeout, func() bool { list = m.To(t, addr); return len(list) > 0 }) {
		t.Fatalf("no mail to %s arrived at %s within %s", addr, m.API, timeout)
	}
	return m.Message(t, list[0].ID)
}

// SetChaos sets the SMTP error triggers of a Mailpit started with
// --enable-chaos, for example {"Recipient": {"ErrorCode": 451,
// "Probability": 100}}; an empty map turns them all off.
func (m *Mailpit) SetChaos(t testing.TB, triggers map[string]any) {
	t.Helper()
	body, _ := json.Marshal(triggers)
	req, err := http.NewRequest(http.MethodPut, m.API+"/api/v1/chaos", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("set mailpit chaos: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("set mailpit chaos: %s: %s", resp.Status, b)
	}
}

func (m *Mailpit) get(t testing.TB, path string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.API+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("mailpit GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("mailpit GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("mailpit GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("mailpit GET %s: decode: %v", path, err)
	}
}
