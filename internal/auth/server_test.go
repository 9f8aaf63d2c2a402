package auth_test

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mp3converter/internal/auth"
	"mp3converter/internal/httpx"
	"mp3converter/internal/testenv"
	"mp3converter/internal/token"
)

const secret = "sarcasm" // the secret of testdata/../token fixtures

type stack struct {
	url    string
	db     testenv.MySQLDB
	store  *auth.Store
	tokens *token.Issuer
}

type options struct {
	mysqlAddr  string // override (a testenv.Proxy); default the real server
	loginRate  float64
	loginBurst int
	initSQL    string // run before auth starts, as the original's init.sql would
	noMigrate  bool   // skip `auth migrate` (the server must then refuse to start)

	accountRate   float64
	accountBurst  int
	sharedPeers   string // SHARED_CLIENT_PEERS
	keepPlaintext bool   // KEEP_PLAINTEXT_PASSWORDS
	legacyAdmin   bool   // LEGACY_ADMIN_CLAIM
	cost          int    // BCRYPT_COST; 0: 4
	log           *slog.Logger
}

func newStack(t *testing.T, o options) *stack {
	t.Helper()
	db := testenv.MySQL(t)
	if o.initSQL != "" {
		db.Exec(t, o.initSQL)
	}
	mc := auth.MySQLConfig{Host: db.Host, Port: db.Port, User: db.User, Password: db.Password, DB: db.Name, Timeout: time.Second}
	if o.mysqlAddr != "" {
		host, port, _ := net.SplitHostPort(o.mysqlAddr)
		mc.Host = host
		mc.Port, _ = strconv.Atoi(port)
	}
	return newStackWith(t, db, mc, o)
}

// newStackWith runs auth on db, reached as mc.
func newStackWith(t *testing.T, db testenv.MySQLDB, mc auth.MySQLConfig, o options) *stack {
	t.Helper()
	ctx := context.Background()
	if !o.noMigrate {
		if _, _, err := auth.Migrate(ctx, mc); err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	store, err := auth.OpenStore(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tokens, _ := token.New(secret, 24*time.Hour, token.LegacyAdminClaim(o.legacyAdmin))
	log := o.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a, err := auth.NewAuthenticator(store, tokens, auth.PasswordOptions{Cost: cmp.Or(o.cost, 4), KeepPlaintext: o.keepPlaintext}, log)
	if err != nil {
		t.Fatal(err)
	}
	if o.loginRate == 0 {
		o.loginRate, o.loginBurst = 1000, 1000
	}
	shared, err := auth.Config{SharedClientPeers: o.sharedPeers}.SharedPeers()
	if err != nil {
		t.Fatal(err)
	}
	ops := httpx.NewOps(httpx.NewRegistry())
	ops.AddCheck("mysql", store.Ping)
	srv := httptest.NewServer(auth.NewServer(a, tokens, ops, log, auth.ServerOptions{
		RequestTimeout: 5 * time.Second, LoginRate: o.loginRate, LoginBurst: o.loginBurst,
		AccountRate: o.accountRate, AccountBurst: o.accountBurst, SharedPeers: shared,
	}))
	t.Cleanup(srv.Close)
	return &stack{url: srv.URL, db: db, store: store, tokens: tokens}
}

func (s *stack) mysql() auth.MySQLConfig {
	return auth.MySQLConfig{Host: s.db.Host, Port: s.db.Port, User: s.db.User, Password: s.db.Password, DB: s.db.Name, Timeout: time.Second}
}

func (s *stack) addUser(t *testing.T, email, password string, admin bool) {
	t.Helper()
	h, err := auth.HashPassword(password, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.PutUser(context.Background(), email, h, admin); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, method, url string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestLogin(t *testing.T) {
	t.Parallel()
	s := newStack(t, options{})
	s.addUser(t, "someone@example.com", "right horse", false)
	s.addUser(t, "boss@example.com", "b055", true)

	tests := []struct {
		name       string
		authz      string
		wantStatus int
		wantBody   string // "" = a token is expected
	}{
		{"no header", "", 401, "missing credentials"},
		{"bearer instead of basic", "Bearer abc", 401, "missing credentials"},
		{"basic not base64", "Basic !!!not-base64", 401, "missing credentials"},
		{"basic without colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("nocolon")), 401, "missing credentials"},
		{"scheme only", "Basic", 401, "missing credentials"},
		{"digest scheme", `Digest username="a", realm="b"`, 401, "missing credentials"},
		{"basic padding only", "Basic ====", 401, "missing credentials"},
		{"wrong password", basic("someone@example.com", "wrong"), 401, "invalid credentials"},
		{"unknown email", basic("nobody@example.com", "right horse"), 401, "invalid credentials"},
		{"empty email and password", basic("", ""), 401, "invalid credentials"},
		{"sql metacharacters", basic("' OR '1'='1' -- ", "' OR '1'='1"), 401, "invalid credentials"},
		{"sql in password", basic("someone@example.com", "x' OR 'x'='x"), 401, "invalid credentials"},
		{"email too long", basic(strings.Repeat("a", 300)+"@example.com", "x"), 401, "invalid credentials"},
		{"password too long", basic("someone@example.com", strings.Repeat("p", 5000)), 401, "invalid credentials"},
		{"right", basic("someone@example.com", "right horse"), 200, ""},
		{"admin", basic("boss@example.com", "b055"), 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := do(t, "POST", s.url+"/login", map[string]string{"Authorization": tc.authz})
			if status != tc.wantStatus {
				t.Fatalf("status = %d (%q), want %d", status, body, tc.wantStatus)
			}
			if tc.wantBody != "" {
				if body != tc.wantBody {
					t.Fatalf("body = %q, want %q", body, tc.wantBody)
				}
				return
			}
			c, err := s.tokens.Verify(body)
			if err != nil {
				t.Fatalf("login body %q is not a valid token: %v", body, err)
			}
			wantUser := "someone@example.com"
			if tc.name == "admin" {
				wantUser = "boss@example.com"
			}
			if c.Username != wantUser || c.Admin != (tc.name == "admin") || c.IsAdmin() != (tc.name == "admin") {
				t.Fatalf("claims = %+v", c)
			}
			if d := time.Until(time.Unix(c.Exp, 0)); d < 23*time.Hour || d > 25*time.Hour {
				t.Fatalf("token expires in %s, want 1 day", d)
			}
		})
	}
	t.Run("GET is not allowed", func(t *testing.T) {
		if status, _, _ := do(t, "GET", s.url+"/login", map[string]string{"Authorization": basic("someone@example.com", "right horse")}); status != 405 {
			t.Fatalf("status = %d, want 405", status)
		}
	})
}

// A database made by the original's init.sql (plaintext passwords) keeps
// working: the schema is upgraded in place, the password logs in and is
// re-hashed on that first login.
func TestLegacyDatabase(t *testing.T) {
	t.Parallel()
	initSQL, err := os.ReadFile("testdata/original-init.sql")
	if err != nil {
		t.Fatal(err)
	}
	// The fixture creates and uses database `auth`; run it in ours.
	stmts := strings.NewReplacer("CREATE DATABASE IF NOT EXISTS auth;", "", "USE auth;", "").Replace(string(initSQL))
	s := newStack(t, options{initSQL: stmts})

	db, err := sql.Open("mysql", s.db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var pw, scheme string
	var admin bool
	row := func() {
		t.Helper()
		if err := db.QueryRow("SELECT password, password_scheme, admin FROM user WHERE email='georgio@email.com'").Scan(&pw, &scheme, &admin); err != nil {
			t.Fatal(err)
		}
	}
	row()
	if pw != "Admin123" || scheme != "plain" || admin {
		t.Fatalf("after migration: password %q scheme %q admin %v", pw, scheme, admin)
	}
	if status, body, _ := do(t, "POST", s.url+"/login", map[string]string{"Authorization": basic("georgio@email.com", "wrong")}); status != 401 || body != "invalid credentials" {
		t.Fatalf("wrong legacy password: %d %q", status, body)
	}
	for i := range 2 {
		status, body, _ := do(t, "POST", s.url+"/login", map[string]string{"Authorization": basic("georgio@email.com", "Admin123")})
		if status != 200 {
			t.Fatalf("login %d: %d %q", i, status, body)
		}
		row()
		if scheme != "bcrypt" || !strings.HasPrefix(pw, "$2") || strings.Contains(pw, "Admin123") {
			t.Fatalf("after login %d: password %q scheme %q, want a bcrypt hash", i, pw, scheme)
		}
	}
	// Migrating twice changes nothing (a second replica, a restart).
	from, to, err := auth.Migrate(context.Background(), s.mysql())
	if err != nil || from != auth.SchemaVersion || to != auth.SchemaVersion {
		t.Fatalf("second migration: %d → %d, %v; want %d, nothing to do", from, to, err, auth.SchemaVersion)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	s := newStack(t, options{})
	var fx struct {
		Accept map[string]string `json:"accept"`
		Refuse map[string]string `json:"refuse"`
	}
	b, err := os.ReadFile("../token/testdata/pyjwt-tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	own, _ := s.tokens.Issue("me@example.com", false)
	other, _ := token.New("not-the-secret", time.Hour)
	forged, _ := other.Issue("me@example.com", true)

	type tcase struct {
		name, authz string
		status      int
		body        string
	}
	tests := []tcase{
		{"no header", "", 401, "missing credentials"},
		{"basic scheme", basic("a", "b"), 401, "missing credentials"},
		{"bearer without token", "Bearer ", 401, "missing credentials"},
		{"bearer garbage", "Bearer garbage", 403, "not authorized"},
		{"bearer wrong secret", "Bearer " + forged, 403, "not authorized"},
		{"very long bearer", "Bearer " + strings.Repeat("x", 32<<10), 403, "not authorized"},
		{"own token", "Bearer " + own, 200, ""},
	}
	for name, tok := range fx.Accept {
		tests = append(tests, tcase{"pyjwt " + name, "Bearer " + tok, 200, ""})
	}
	for name, tok := range fx.Refuse {
		tests = append(tests, tcase{"pyjwt " + name, "Bearer " + tok, 403, "not authorized"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, h := do(t, "POST", s.url+"/validate", map[string]string{"Authorization": tc.authz})
			if status != tc.status {
				t.Fatalf("status = %d (%q), want %d", status, body, tc.status)
			}
			if tc.status != 200 {
				if body != tc.body {
					t.Fatalf("body = %q, want %q", body, tc.body)
				}
				return
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type = %q", ct)
			}
			var claims map[string]any
			if err := json.Unmarshal([]byte(body), &claims); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if _, ok := claims["username"].(string); !ok {
				t.Fatalf("claims %v: username not a string", claims)
			}
			if _, ok := claims["admin"].(bool); !ok {
				t.Fatalf("claims %v: admin not a bool", claims)
			}
			if _, ok := claims["exp"].(float64); !ok {
				t.Fatalf("claims %v: exp not a number", claims)
			}
		})
	}
	t.Run("header over the server limit", func(t *testing.T) {
		status, _, _ := do(t, "POST", s.url+"/validate", map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 2<<20)})
		if status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status = %d, want 431", status)
		}
	})
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	s := newStack(t, options{loginRate: 0.01, loginBurst: 3})
	for i := range 3 {
		if status, body, _ := do(t, "POST", s.url+"/login", map[string]string{"Authorization": basic("x@y.z", "p")}); status != 401 {
			t.Fatalf("attempt %d: %d %q", i, status, body)
		}
	}
	status, body, h := do(t, "POST", s.url+"/login", map[string]string{"Authorization": basic("x@y.z", "p")})
	if status != http.StatusTooManyRequests {
		t.Fatalf("4th attempt: %d %q, want 429", status, body)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After = %q", h.Get("Retry-After"))
	}
	// Behind a proxy that appends the address it saw (the test's loopback
	// peer is trusted), a client rotating its own X-Forwarded-For entry
	// stays in its bucket; another client has its own.
	viaProxy := func(xff string) int {
		status, _, _ := do(t, "POST", s.url+"/login", map[string]string{"Authorization": basic("x@y.z", "p"), "X-Forwarded-For": xff})
		return status
	}
	for i := range 3 {
		if status := viaProxy("203.0.113.10"); status != 401 {
			t.Fatalf("other client, attempt %d: %d, want 401", i, status)
		}
	}
	for i := range 5 {
		if status := viaProxy(fmt.Sprintf("198.51.100.%d, 203.0.113.10", i)); status != http.StatusTooManyRequests {
			t.Fatalf("spoofed first entry %d: %d, want 429 (the client escaped its bucket)", i, status)
		}
	}
	// Validation is not limited.
	tok, _ := s.tokens.Issue("x@y.z", false)
	if status, _, _ := do(t, "POST", s.url+"/validate", map[string]string{"Authorization": "Bearer " + tok}); status != 200 {
		t.Fatalf("validate while login is limited: %d", status)
	}
}

// MySQL going away gives 503 on /login and /readyz, quickly; validation
// (no database) keeps working; MySQL coming back heals both.
func TestMySQLDown(t *testing.T) {
	t.Parallel()
	target := net.JoinHostPort(testenv.Getenv(t, "MYSQL_HOST"), testenv.Getenv(t, "MYSQL_PORT"))
	proxy := testenv.NewProxy(t, target)
	s := newStack(t, options{mysqlAddr: proxy.Addr()})
	s.addUser(t, "u@example.com", "pw", false)
	login := map[string]string{"Authorization": basic("u@example.com", "pw")}
	if status, _, _ := do(t, "POST", s.url+"/login", login); status != 200 {
		t.Fatalf("login before outage: %d", status)
	}
	proxy.Down()
	if status, body, _ := do(t, "POST", s.url+"/login", login); status != 503 || body != "service unavailable" {
		t.Fatalf("login during outage: %d %q, want 503", status, body)
	}
	if status, _, _ := do(t, "GET", s.url+"/readyz", nil); status != 503 {
		t.Fatalf("readyz during outage: %d, want 503", status)
	}
	tok, _ := s.tokens.Issue("u@example.com", false)
	if status, _, _ := do(t, "POST", s.url+"/validate", map[string]string{"Authorization": "Bearer " + tok}); status != 200 {
		t.Fatalf("validate during outage: %d", status)
	}
	proxy.Up()
	if status, body, _ := do(t, "POST", s.url+"/login", login); status != 200 {
		t.Fatalf("login after outage: %d %q", status, body)
	}
	if status, _, _ := do(t, "GET", s.url+"/readyz", nil); status != 200 {
		t.Fatalf("readyz after outage: %d", status)
	}
}

func TestOpsEndpoints(t *testing.T) {
	t.Parallel()
	s := newStack(t, options{})
	if status, body, _ := do(t, "GET", s.url+"/healthz", nil); status != 200 || body != "ok" {
		t.Fatalf("healthz: %d %q", status, body)
	}
	if status, body, _ := do(t, "GET", s.url+"/readyz", nil); status != 200 || !strings.Contains(body, `"mysql":"ok"`) {
		t.Fatalf("readyz: %d %q", status, body)
	}
	do(t, "POST", s.url+"/login", map[string]string{"Authorization": basic("a@b.c", "x")})
	status, body, _ := do(t, "GET", s.url+"/metrics", nil)
	if status != 200 || !strings.Contains(body, `auth_logins_total{result="invalid"} 1`) ||
		!strings.Contains(body, "go_goroutines") || !strings.Contains(body, `http_requests_total{code="401",method="POST",route="/login"} 1`) {
		t.Fatalf("metrics: %d\n%s", status, body)
	}
}

// A hash of another cost than BCRYPT_COST is re-hashed at BCRYPT_COST on
// its next good login (and not on a bad one), so that every user's
// comparison comes to cost what an unknown email's does.
func TestRehashWhenTheCostChanged(t *testing.T) {
	t.Parallel()
	s := newStack(t, options{cost: 5})
	s.addUser(t, "old@example.com", "pw", false) // cost 4
	cost := func() int {
		t.Helper()
		var pw string
		db, _ := sql.Open("mysql", s.db.DSN())
		defer db.Close()
		if err := db.QueryRow("SELECT password FROM user WHERE email = 'old@example.com'").Scan(&pw); err != nil {
			t.Fatal(err)
		}
		c, err := bcrypt.Cost([]byte(pw))
		if err != nil {
			t.Fatalf("stored %q: %v", pw, err)
		}
		return c
	}
	if status, _, _ := do(t, "POST", s.url+"/login", map[string]string{"Authorization": basic("old@example.com", "wrong")}); status != 401 {
		t.Fatalf("wrong password: %d", status)
	}
	if c := cost(); c != 4 {
		t.Fatalf("after a refused login the cost is %d, want 4 (unchanged)", c)
	}
	for i := range 2 {
		if status, body, _ := do(t, "POST", s.url+"/login", map[string]string{"Authorization": basic("old@example.com", "pw")}); status != 200 {
			t.Fatalf("login %d: %d %q", i, status, body)
		}
		if c := cost(); c != 5 {
			t.Fatalf("after login %d the cost is %d, want 5", i, c)
		}
	}
}
