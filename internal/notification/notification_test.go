package notification_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/config"
	"mp3converter/internal/downloadlink"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/message"
	"mp3converter/internal/mq"
	"mp3converter/internal/notification"
	"mp3converter/internal/testenv"
)

const (
	publicURL = "http://127.0.0.1:8080"
	mailFrom  = "MP3 Converter <noreply@mp3.example.com>"
	mailWait  = 15 * time.Second
)

// stack is one notification service consuming a private queue, as
// cmd/notification wires it, with the SMTP settings a test gives, recording
// into private MongoDB databases (videos: the jobs; mp3s: the MP3s).
type stack struct {
	t     *testing.T
	url   string // the broker's
	queue string
	conn  *mq.Conn
	reg   *prometheus.Registry
	logs  *testenv.Buffer

	videosDB, mp3sDB *mongo.Database // reached directly, not through mongoProxy
	jobs             *jobs.Store
	mongoProxy       *testenv.Proxy // between the service and MongoDB when stackOptions.mongoProxy
}

type stackOptions struct {
	maxAttempts int  // [3]
	mongoProxy  bool // the service reaches MongoDB through a testenv.Proxy
	// links signs the success emails' download links (DOWNLOAD_LINK_KEY)
	// for linkTTL; nil: none.
	links   *downloadlink.Signer
	linkTTL time.Duration
}

// plainSMTP is the shared Mailpit without TLS or auth.
func plainSMTP(m *testenv.Mailpit) notification.SMTPConfig {
	return notification.SMTPConfig{Host: m.SMTPHost, Port: m.SMTPPort, TLS: notification.TLSNone, Timeout: 5 * time.Second}
}

func startStack(t *testing.T, smtp notification.SMTPConfig, opt stackOptions) *stack {
	t.Helper()
	url := testenv.RabbitMQ(t)
	queue := testenv.Queue(t, url, "notify")
	log, logs := testenv.Logger(t)
	if opt.maxAttempts == 0 {
		opt.maxAttempts = 3
	}
	reg := prometheus.NewRegistry()
	mqm, err := mq.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	nm, err := notification.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sender, err := notification.NewSMTP(smtp, mailFrom)
	if err != nil {
		t.Fatalf("NewSMTP: %v", err)
	}
	composer, err := notification.NewComposer(publicURL, mailFrom)
	if err != nil {
		t.Fatal(err)
	}
	if opt.links != nil {
		if err := composer.SignLinks(opt.links, opt.linkTTL); err != nil {
			t.Fatal(err)
		}
	}
	st := &stack{t: t, url: url, queue: queue, reg: reg, logs: logs, videosDB: testenv.Mongo(t), mp3sDB: testenv.Mongo(t)}
	if st.jobs, err = jobs.NewStore(st.videosDB); err != nil {
		t.Fatal(err)
	}
	// The service's own view of the databases, as mongodb.Open gives it.
	svcVideos, svcMP3s := st.videosDB, st.mp3sDB
	if opt.mongoProxy {
		svcVideos, svcMP3s, st.mongoProxy = throughProxy(t, st.videosDB, st.mp3sDB)
	}
	jobStore, err := jobs.NewStore(svcVideos)
	if err != nil {
		t.Fatal(err)
	}
	mp3s, err := gridfs.NewBucket(svcMP3s)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := notification.NewRecorder(jobStore, mp3s)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := notification.New(sender, composer, rec, notification.Options{Log: log, Metrics: nm})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mq.New(url, log, mq.Options{Metrics: mqm, MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, PublishTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("dial rabbitmq: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	testenv.Connected(t, conn)
	st.conn = conn

	cctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- conn.Consume(cctx, queue, mq.ConsumeOptions{Concurrency: 2, MaxAttempts: opt.maxAttempts,
			RetryBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
			ShutdownTimeout: 10 * time.Second, Log: log}, svc.Handle)
	}()
	// Registered first, so it runs after the queue's deletion is set up
	// and before the connection closes.
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Consume = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Consume did not return within 20s of cancellation")
		}
	})
	return st
}

func (s *stack) publish(body []byte) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.conn.Publish(ctx, s.queue, mq.Message{Body: body}); err != nil {
		s.t.Fatalf("publish: %v", err)
	}
}

func (s *stack) publishMsg(m message.Conversion) { s.t.Helper(); s.publish(m.Encode()) }

// count returns notifications_total{result}.
func (s *stack) count(result string) float64 {
	s.t.Helper()
	return testenv.Metric(s.t, s.reg, "notifications_total", map[string]string{"result": result})
}

func (s *stack) handled(outcome string) float64 {
	s.t.Helper()
	return testenv.Metric(s.t, s.reg, "mq_messages_handled_total", map[string]string{"queue": s.queue, "outcome": outcome})
}

func (s *stack) waitCount(result string, n float64) {
	s.t.Helper()
	testenv.Eventually(s.t, mailWait, "notifications_total{result="+result+"} reaches the expected count", func() bool {
		return s.count(result) >= n
	})
}

func (s *stack) depth(queue string) int {
	s.t.Helper()
	n, _ := testenv.QueueDepth(s.t, s.url, queue)
	return n
}

// drained checks that the queue and its dead-letter queue are empty and
// nothing is in flight.
func (s *stack) drained() {
	s.t.Helper()
	testenv.Eventually(s.t, 5*time.Second, "queue drained", func() bool {
		return s.depth(s.queue) == 0 &&
			testenv.Metric(s.t, s.reg, "mq_handlers_in_flight", map[string]string{"queue": s.queue}) == 0
	})
	if n := s.depth(mq.DeadLetterQueue(s.queue)); n != 0 {
		s.t.Errorf("dead-letter queue holds %d messages, want 0", n)
	}
}

func success(to, filename string) message.Conversion {
	return message.Conversion{VideoFID: videoFID, MP3FID: ptr(mp3FID), Username: to, Filename: filename}
}

func TestSuccessEmail(t *testing.T) {
	t.Parallel()
	mp := testenv.MailpitShared(t)
	s := startStack(t, plainSMTP(mp), stackOptions{})
	to := testenv.MailAddress("notify_ok")
	s.publishMsg(success(to, `<b>holiday</b> & "friends".mp4`))

	got := mp.WaitFor(t, to, mailWait)
	if got.Subject != "MP3 Download" {
		t.Errorf("Subject = %q, want MP3 Download", got.Subject)
	}
	if len(got.To) != 1 || got.To[0].Address != to || got.To[0].Name != "" {
		t.Errorf("To = %+v, want exactly %s", got.To, to)
	}
	if h := got.Headers["To"]; !slices.Equal(h, []string{"<" + to + ">"}) && !slices.Equal(h, []string{to}) {
		t.Errorf("To header = %q, want exactly %s", h, to)
	}
	if len(got.Cc)+len(got.Bcc) != 0 {
		t.Errorf("Cc %v Bcc %v, want none", got.Cc, got.Bcc)
	}
	if got.From.Address != "noreply@mp3.example.com" || got.From.Name != "MP3 Converter" {
		t.Errorf("From = %+v", got.From)
	}
	for _, want := range []string{
		"mp3 file_id: " + mp3FID + " is now ready!",
		publicURL + "/?download=" + mp3FID,
		"GET " + publicURL + "/download?fid=" + mp3FID,
		"Authorization: Bearer",
		`<b>holiday</b> & "friends".mp4`,
	} {
		if !strings.Contains(got.Text, want) {
			t.Errorf("text body lacks %q:\n%s", want, got.Text)
		}
	}
	if !strings.Contains(got.HTML, `href="`+publicURL+`/?download=`+mp3FID+`"`) {
		t.Errorf("HTML part lacks the download link:\n%s", got.HTML)
	}
	if !strings.Contains(got.HTML, "&lt;b&gt;holiday&lt;/b&gt;") || strings.Contains(got.HTML, "<b>holiday") {
		t.Errorf("HTML part does not escape the filename:\n%s", got.HTML)
	}
	if got.MessageID != "mp3-"+mp3FID+"@mp3.example.com" {
		t.Errorf("Message-ID = %q", got.MessageID)
	}
	if h := got.Headers["Auto-Submitted"]; !slices.Equal(h, []string{"auto-generated"}) {
		t.Errorf("Auto-Submitted = %q", h)
	}
	s.waitCount(notification.ResultSent, 1)
	s.drained()
	if n := len(mp.To(t, to)); n != 1 {
		t.Errorf("%d emails to %s, want 1", n, to)
	}
}

func TestFailureEmail(t *testing.T) {
	t.Parallel()
	mp := testenv.MailpitShared(t)
	s := startStack(t, plainSMTP(mp), stackOptions{})
	to := testenv.MailAddress("notify_failed")
	s.publishMsg(message.Conversion{VideoFID: videoFID, Username: to, Filename: "cat.mov",
		Error: "not a video: no audio track"})

	got := mp.WaitFor(t, to, mailWait)
	if got.Subject != "MP3 conversion failed" {
		t.Errorf("Subject = %q", got.Subject)
	}
	for _, want := range []string{"The conversion of cat.mov to MP3 failed", "not a video: no audio track"} {
		if !strings.Contains(got.Text, want) {
			t.Errorf("text body lacks %q:\n%s", want, got.Text)
		}
	}
	for _, want := range []string{"<strong>cat.mov</strong> to MP3 failed", "not a video: no audio track"} {
		if !strings.Contains(got.HTML, want) {
			t.Errorf("HTML part lacks %q:\n%s", want, got.HTML)
		}
	}
	if strings.Contains(got.Text, "is now ready") || strings.Contains(got.Text, "?download=") {
		t.Errorf("failure email talks about a download:\n%s", got.Text)
	}
	s.waitCount(notification.ResultSent, 1)
	s.drained()
}

// Messages that can never become an email are acked at once (not retried,
// not dead-lettered) and nothing is sent; the consumer carries on.
func TestInvalidMessagesAcked(t *testing.T) {
	t.Parallel()
	mp := testenv.MailpitShared(t)
	s := startStack(t, plainSMTP(mp), stackOptions{})
	victim, evil := testenv.MailAddress("notify_victim"), testenv.MailAddress("notify_evil")
	noFID := success(victim, "")
	noFID.MP3FID = nil
	bad := []struct {
		name string
		body []byte
	}{
		{"not JSON", []byte(`{"video_fid": `)},
		{"no video_fid", []byte(`{"mp3_fid": "` + mp3FID + `", "username": "` + victim + `"}`)},
		{"neither mp3_fid nor error", noFID.Encode()},
		{"CRLF header injection in username", success(victim+"\r\nBcc: "+evil, "").Encode()},
		{"LF header injection in username", success(victim+"\nCc: "+evil, "").Encode()},
		{"display name in username", success("Evil <"+evil+">", "").Encode()},
		{"two recipients", success(victim+", "+evil, "").Encode()},
		{"CRLF in filename", success(victim, "a.mp4\r\nBcc: "+evil).Encode()},
	}
	for _, b := range bad {
		s.publish(b.body)
	}
	s.waitCount(notification.ResultFailed, float64(len(bad)))

	// A valid message afterwards still goes through.
	ok := testenv.MailAddress("notify_after_invalid")
	s.publishMsg(success(ok, "fine.mp4"))
	mp.WaitFor(t, ok, mailWait)
	s.drained()

	for _, addr := range []string{victim, evil} {
		if got := mp.To(t, addr); len(got) != 0 {
			t.Errorf("%d emails to %s, want none: %+v", len(got), addr, got)
		}
	}
	if n := s.count(notification.ResultFailed); n != float64(len(bad)) {
		t.Errorf("failed = %v, want %d", n, len(bad))
	}
	if n := s.count(notification.ResultRetried); n != 0 {
		t.Errorf("retried = %v, want 0", n)
	}
	testenv.Eventually(t, 5*time.Second, "every invalid message acked as failed, without retry", func() bool {
		return s.handled(mq.OutcomeFailed) == float64(len(bad)) && s.handled(mq.OutcomeRetried) == 0
	})
}

// The SMTP server down (connection refused) is transient: the message is
// retried and delivered once the server is back.
func TestSMTPDownRetried(t *testing.T) {
	t.Parallel()
	mp := testenv.MailpitShared(t)
	proxy := testenv.NewProxy(t, mp.SMTPAddr())
	proxy.Down()
	smtp := plainSMTP(mp)
	host, port := splitHostPort(t, proxy.Addr())
	smtp.Host, smtp.Port = host, port
	s := startStack(t, smtp, stackOptions{maxAttempts: 50})
	to := testenv.MailAddress("notify_outage")
	s.publishMsg(success(to, ""))

	s.waitCount(notification.ResultRetried, 2)
	if got := mp.To(t, to); len(got) != 0 {
		t.Fatalf("mail arrived while the server was down: %+v", got)
	}
	proxy.Up()
	got := mp.WaitFor(t, to, mailWait)
	if !strings.Contains(got.Text, "mp3 file_id: "+mp3FID+" is now ready!") {
		t.Errorf("text body:\n%s", got.Text)
	}
	s.waitCount(notification.ResultSent, 1)
	s.drained()
	if n := len(mp.To(t, to)); n != 1 {
		t.Errorf("%d emails, want 1", n)
	}
	if n := s.count(notification.ResultFailed); n != 0 {
		t.Errorf("failed = %v, want 0", n)
	}
}

// A message that keeps failing transiently goes to the dead-letter queue
// after MAX_ATTEMPTS, and counts as failed once.
func TestSMTPDownDeadLettered(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewProxy(t, "127.0.0.1:1") // never reachable
	proxy.Down()
	host, port := splitHostPort(t, proxy.Addr())
	s := startStack(t, notification.SMTPConfig{Host: host, Port: port, TLS: notification.TLSNone,
		Timeout: 2 * time.Second}, stackOptions{maxAttempts: 2})
	s.publishMsg(success(testenv.MailAddress("notify_dead"), ""))

	// The copy is in the dead-letter queue before the original is acked.
	testenv.Eventually(t, mailWait, "the message is dead-lettered and acked", func() bool {
		return s.handled(mq.OutcomeDeadLettered) == 1
	})
	if n := s.depth(mq.DeadLetterQueue(s.queue)); n != 1 {
		t.Errorf("dead-letter queue holds %d messages, want 1", n)
	}
	if n := s.depth(s.queue); n != 0 {
		t.Errorf("queue holds %d messages, want 0", n)
	}
	if r, f := s.count(notification.ResultRetried), s.count(notification.ResultFailed); r != 1 || f != 1 {
		t.Errorf("retried, failed = %v, %v; want 1, 1", r, f)
	}
}

// A 4xx reply is transient: retried until the server accepts.
func TestSMTP4xxRetried(t *testing.T) {
	t.Parallel()
	mp := testenv.StartMailpit(t, "--enable-chaos", "--chaos-triggers", "Recipient:451:100")
	s := startStack(t, plainSMTP(mp), stackOptions{maxAttempts: 50})
	to := testenv.MailAddress("notify_451")
	s.publishMsg(success(to, ""))

	s.waitCount(notification.ResultRetried, 2)
	if got := mp.To(t, to); len(got) != 0 {
		t.Fatalf("mail arrived despite 451: %+v", got)
	}
	mp.SetChaos(t, map[string]any{})
	mp.WaitFor(t, to, mailWait)
	s.waitCount(notification.ResultSent, 1)
	s.drained()
	if n := len(mp.To(t, to)); n != 1 {
		t.Errorf("%d emails, want 1", n)
	}
}

// A 5xx reply (recipient refused) is permanent: acked, counted, not retried.
func TestSMTP5xxPermanent(t *testing.T) {
	t.Parallel()
	mp := testenv.StartMailpit(t, "--smtp-allowed-recipients", `^allowed_`)
	s := startStack(t, plainSMTP(mp), stackOptions{maxAttempts: 5})
	refused := testenv.MailAddress("refused")
	s.publishMsg(success(refused, ""))
	s.waitCount(notification.ResultFailed, 1)

	allowed := testenv.MailAddress("allowed")
	s.publishMsg(success(allowed, ""))
	mp.WaitFor(t, allowed, mailWait)
	s.drained()
	if got := mp.To(t, refused); len(got) != 0 {
		t.Errorf("mail to the refused address: %+v", got)
	}
	if r := s.count(notification.ResultRetried); r != 0 {
		t.Errorf("retried = %v, want 0", r)
	}
	testenv.Eventually(t, 5*time.Second, "the refused message acked as failed, without retry", func() bool {
		return s.handled(mq.OutcomeFailed) == 1 && s.handled(mq.OutcomeRetried) == 0
	})
	if !strings.Contains(s.logs.String(), "550") {
		t.Errorf("logs do not mention the 550 reply:\n%s", s.logs.String())
	}
}

// The Gmail path: STARTTLS on a real TLS handshake (a test CA), then AUTH.
func TestStartTLSAuth(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	authFile := filepath.Join(t.TempDir(), "smtp-auth")
	if err := os.WriteFile(authFile, []byte("mailer@mp3.example.com:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mp := testenv.StartMailpit(t, "--smtp-tls-cert", pki.cert, "--smtp-tls-key", pki.key,
		"--smtp-auth-file", authFile, "--smtp-require-starttls")
	gmailLike := func() notification.SMTPConfig {
		return notification.SMTPConfig{Host: "127.0.0.1", Port: mp.SMTPPort, TLS: notification.TLSStartTLS,
			Username: "mailer@mp3.example.com", Password: "s3cret", CAFile: pki.ca, Timeout: 5 * time.Second}
	}

	t.Run("right password delivers", func(t *testing.T) {
		t.Parallel()
		s := startStack(t, gmailLike(), stackOptions{})
		to := testenv.MailAddress("notify_tls")
		s.publishMsg(success(to, ""))
		got := mp.WaitFor(t, to, mailWait)
		if got.Subject != "MP3 Download" {
			t.Errorf("Subject = %q", got.Subject)
		}
		if got.Username != "mailer@mp3.example.com" {
			t.Errorf("SMTP AUTH username = %q, want mailer@mp3.example.com", got.Username)
		}
		s.waitCount(notification.ResultSent, 1)
		s.drained()
	})

	t.Run("GMAIL_ variables still work", func(t *testing.T) {
		t.Parallel()
		cfg, err := config.LoadFrom[notification.Config](map[string]string{
			"GMAIL_ADDRESS": "mailer@mp3.example.com", "GMAIL_PASSWORD": "s3cret",
			"SMTP_HOST": "127.0.0.1", "SMTP_PORT": strconv.Itoa(mp.SMTPPort), "SMTP_CA_FILE": pki.ca,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		s := startStack(t, cfg.SMTP, stackOptions{})
		to := testenv.MailAddress("notify_gmail_vars")
		s.publishMsg(success(to, ""))
		mp.WaitFor(t, to, mailWait)
	})

	// A wrong password (535) is the operator's problem, not the message's:
	// retried, then kept in the dead-letter queue for replay, never lost.
	t.Run("wrong password is dead-lettered", func(t *testing.T) {
		t.Parallel()
		cfg := gmailLike()
		cfg.Password = config.Secret("wrong")
		s := startStack(t, cfg, stackOptions{maxAttempts: 2})
		to := testenv.MailAddress("notify_badpass")
		s.publishMsg(success(to, ""))
		testenv.Eventually(t, mailWait, "dead-lettered", func() bool { return s.depth(mq.DeadLetterQueue(s.queue)) == 1 })
		if r := s.count(notification.ResultRetried); r != 1 {
			t.Errorf("retried = %v, want 1", r)
		}
		if got := mp.To(t, to); len(got) != 0 {
			t.Errorf("mail delivered with a wrong password: %+v", got)
		}
		if !strings.Contains(s.logs.String(), "535") {
			t.Errorf("logs do not mention the 535 reply:\n%s", s.logs.String())
		}
		if strings.Contains(s.logs.String(), "wrong") {
			t.Errorf("the password appears in the logs:\n%s", s.logs.String())
		}
	})

	t.Run("untrusted certificate is not accepted", func(t *testing.T) {
		t.Parallel()
		cfg := gmailLike()
		cfg.CAFile = "" // system roots: the test CA is unknown
		s := startStack(t, cfg, stackOptions{maxAttempts: 2})
		to := testenv.MailAddress("notify_untrusted")
		s.publishMsg(success(to, ""))
		testenv.Eventually(t, mailWait, "dead-lettered", func() bool { return s.depth(mq.DeadLetterQueue(s.queue)) == 1 })
		if got := mp.To(t, to); len(got) != 0 {
			t.Errorf("mail delivered over an unverified TLS connection: %+v", got)
		}
		if !strings.Contains(s.logs.String(), "certificate") {
			t.Errorf("logs do not mention the certificate:\n%s", s.logs.String())
		}
	})
}

// STARTTLS is mandatory: a server that does not offer it gets nothing.
func TestStartTLSMandatory(t *testing.T) {
	t.Parallel()
	mp := testenv.MailpitShared(t)
	cfg := plainSMTP(mp)
	cfg.TLS = notification.TLSStartTLS
	s := startStack(t, cfg, stackOptions{maxAttempts: 2})
	to := testenv.MailAddress("notify_nostarttls")
	s.publishMsg(success(to, ""))
	testenv.Eventually(t, mailWait, "dead-lettered", func() bool { return s.depth(mq.DeadLetterQueue(s.queue)) == 1 })
	if got := mp.To(t, to); len(got) != 0 {
		t.Errorf("mail sent without STARTTLS: %+v", got)
	}
}

// SMTP_TLS=tls: implicit TLS (port 465 style) with AUTH.
func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	authFile := filepath.Join(t.TempDir(), "smtp-auth")
	if err := os.WriteFile(authFile, []byte("mailer:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mp := testenv.StartMailpit(t, "--smtp-tls-cert", pki.cert, "--smtp-tls-key", pki.key,
		"--smtp-auth-file", authFile, "--smtp-require-tls")
	s := startStack(t, notification.SMTPConfig{Host: "127.0.0.1", Port: mp.SMTPPort, TLS: notification.TLSImplicit,
		Username: "mailer", Password: "pw", CAFile: pki.ca, Timeout: 5 * time.Second}, stackOptions{})
	to := testenv.MailAddress("notify_implicit")
	s.publishMsg(success(to, ""))
	if got := mp.WaitFor(t, to, mailWait); got.Username != "mailer" {
		t.Errorf("SMTP AUTH username = %q, want mailer", got.Username)
	}
	s.waitCount(notification.ResultSent, 1)
	s.drained()
}

// --- helpers ---

type pki struct{ ca, cert, key string } // PEM file paths

// newPKI makes a CA and a server certificate for 127.0.0.1 and localhost.
func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "notification test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := pki{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.ca, "CERTIFICATE", caDER)
	write(p.cert, "CERTIFICATE", der)
	write(p.key, "EC PRIVATE KEY", keyDER)
	return p
}

func splitHostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := net.LookupPort("tcp", port)
	if err != nil {
		t.Fatal(err)
	}
	return host, n
}
