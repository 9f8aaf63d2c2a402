package auth_test

// What an operator of the original meets while switching to this auth and
// back: the original's plaintext rows, its way of resetting a password, its
// gateway's demand for admin: true, a read-mostly MySQL account, and the
// original gateway's logins arriving from one address.

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"mp3converter/internal/auth"
	"mp3converter/internal/testenv"
)

// originalInit is the original's init.sql, run in the test's own database.
func originalInit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/original-init.sql")
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("CREATE DATABASE IF NOT EXISTS auth;", "", "USE auth;", "").Replace(string(b))
}

func (s *stack) sql(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", s.db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// password returns the user's password column as stored.
func (s *stack) password(t *testing.T, email string) string {
	t.Helper()
	var pw string
	if err := s.sql(t).QueryRow("SELECT password FROM user WHERE email = ?", email).Scan(&pw); err != nil {
		t.Fatal(err)
	}
	return pw
}

func (s *stack) login(t *testing.T, email, password string) (int, string) {
	t.Helper()
	status, body, _ := do(t, "POST", s.url+"/login", map[string]string{"Authorization": basic(email, password)})
	return status, body
}

// Item 3: with KEEP_PLAINTEXT_PASSWORDS the original's rows log in and stay
// plaintext, so the original auth beside this one (a rolling update, a
// rollback) still logs the same users in; `auth user migrate-passwords`
// is the deliberate step that commits to bcrypt.
func TestKeepPlaintextPasswordsThenMigrate(t *testing.T) {
	t.Parallel()
	s := newStack(t, options{initSQL: originalInit(t), keepPlaintext: true})
	s.db.Exec(t, "INSERT INTO user (email, password) VALUES ('second@example.com', 'Second-pw'), ('long@example.com', '"+strings.Repeat("x", 80)+"')")
	for i := range 3 {
		if status, body := s.login(t, "georgio@email.com", "Admin123"); status != 200 {
			t.Fatalf("login %d: %d %q", i, status, body)
		}
		// What the original auth compares: the password column, as typed.
		if pw := s.password(t, "georgio@email.com"); pw != "Admin123" {
			t.Fatalf("after login %d the row holds %q: the original auth would refuse this user", i, pw)
		}
	}
	if status, _ := s.login(t, "georgio@email.com", "admin123"); status != 401 {
		t.Fatalf("wrong case of a plaintext password: %d, want 401", status)
	}

	rep, err := auth.HashPlaintextPasswords(context.Background(), s.store, 4)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Hashed != 2 || len(rep.Skipped) != 1 || rep.Skipped[0] != "long@example.com" {
		t.Fatalf("migrate-passwords = %+v, want 2 hashed and long@example.com skipped (over bcrypt's 72 bytes)", rep)
	}
	for _, u := range []struct{ email, pw string }{{"georgio@email.com", "Admin123"}, {"second@example.com", "Second-pw"}} {
		if stored := s.password(t, u.email); !auth.IsHash(stored) || strings.Contains(stored, u.pw) {
			t.Fatalf("%s after migrate-passwords: %q, want a bcrypt hash", u.email, stored)
		}
		if status, body := s.login(t, u.email, u.pw); status != 200 {
			t.Fatalf("%s after migrate-passwords: %d %q", u.email, status, body)
		}
	}
	// Again: nothing left to do.
	if rep, err := auth.HashPlaintextPasswords(context.Background(), s.store, 4); err != nil || rep.Hashed != 0 {
		t.Fatalf("second migrate-passwords = %+v, %v; want nothing hashed", rep, err)
	}
}

// Item 4: an operator resets a password the original's way (plaintext into
// a row that holds a hash): the new password logs in, is re-hashed under
// the rules of item 3, and a refused login on such a row is logged.
func TestPasswordResetByHand(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep plaintext %v", keep), func(t *testing.T) {
			t.Parallel()
			log, logs := testenv.Logger(t)
			s := newStack(t, options{keepPlaintext: keep, log: log})
			s.addUser(t, "reset@example.com", "old password", false)
			s.db.Exec(t, "UPDATE user SET password = 'new password' WHERE email = 'reset@example.com'")

			if status, _ := s.login(t, "reset@example.com", "old password"); status != 401 {
				t.Fatalf("old password after the reset: %d, want 401", status)
			}
			if !strings.Contains(logs.String(), "login refused") || !strings.Contains(logs.String(), "reset by hand") {
				t.Fatalf("a refused login on a plaintext row was not logged:\n%s", logs)
			}
			if status, body := s.login(t, "reset@example.com", "new password"); status != 200 {
				t.Fatalf("new password after the reset: %d %q, want 200", status, body)
			}
			stored := s.password(t, "reset@example.com")
			switch {
			case keep && stored != "new password":
				t.Fatalf("KEEP_PLAINTEXT_PASSWORDS: the row became %q, want it left as the operator wrote it", stored)
			case !keep && !auth.IsHash(stored):
				t.Fatalf("the reset password was not re-hashed: %q", stored)
			}
			if status, _ := s.login(t, "reset@example.com", "new password"); status != 200 {
				t.Fatalf("second login with the new password: %d", status)
			}
		})
	}
}

// Items 1 and 5: with LEGACY_ADMIN_CLAIM every user of a database the
// original made (none of them an administrator here) gets admin: true,
// which the original gateway demands, and role "user", which this suite's
// gateway reads; without it, admin says only whether one is an
// administrator.
func TestLegacyAdminClaim(t *testing.T) {
	t.Parallel()
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy %v", legacy), func(t *testing.T) {
			t.Parallel()
			s := newStack(t, options{initSQL: originalInit(t), legacyAdmin: legacy})
			s.addUser(t, "boss@example.com", "b055", true)
			for _, u := range []struct {
				email, pw string
				role      string
				admin     bool
			}{
				{"georgio@email.com", "Admin123", "user", legacy},
				{"boss@example.com", "b055", "admin", true},
			} {
				status, tok := s.login(t, u.email, u.pw)
				if status != 200 {
					t.Fatalf("login %s: %d %q", u.email, status, tok)
				}
				// The claims as the original gateway reads them: the
				// payload, decoded by PyJWT (or /validate, the same).
				status, body, _ := do(t, "POST", s.url+"/validate", map[string]string{"Authorization": "Bearer " + tok})
				var claims map[string]any
				if status != 200 || json.Unmarshal([]byte(body), &claims) != nil {
					t.Fatalf("validate %s: %d %q", u.email, status, body)
				}
				if claims["admin"] != u.admin || claims["role"] != u.role {
					t.Fatalf("%s: claims %v, want admin %v, role %q", u.email, claims, u.admin, u.role)
				}
				payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
				if !strings.Contains(string(payload), fmt.Sprintf(`"admin":%v`, u.admin)) {
					t.Fatalf("%s: token payload %s", u.email, payload)
				}
			}
		})
	}
}

// Item 6: the server changes no schema. Without `auth migrate` it refuses
// to start with a sentence naming what is missing; after it, an account
// that may only SELECT and UPDATE runs it, and one that may only SELECT
// still logs users in (a re-hash it may not write is skipped).
func TestServerNeedsOnlyReadAccess(t *testing.T) {
	t.Parallel()
	t.Run("empty database", func(t *testing.T) {
		t.Parallel()
		db := testenv.MySQL(t)
		_, err := auth.OpenStore(context.Background(), mysqlConfig(db))
		if !errors.Is(err, auth.ErrSchema) || !strings.Contains(err.Error(), "auth migrate") || !strings.Contains(err.Error(), "no table `user`") {
			t.Fatalf("OpenStore on an empty database: %v, want ErrSchema naming the table and `auth migrate`", err)
		}
	})
	t.Run("original database, not migrated", func(t *testing.T) {
		t.Parallel()
		db := testenv.MySQL(t)
		db.Exec(t, originalInit(t))
		_, err := auth.OpenStore(context.Background(), mysqlConfig(db))
		if !errors.Is(err, auth.ErrSchema) || !strings.Contains(err.Error(), "auth migrate") || !strings.Contains(err.Error(), "password_scheme") {
			t.Fatalf("OpenStore on the original's schema: %v, want ErrSchema naming the column and `auth migrate`", err)
		}
	})
	for _, grant := range []string{"SELECT", "SELECT, UPDATE"} {
		t.Run("account with "+grant, func(t *testing.T) {
			t.Parallel()
			db := testenv.MySQL(t)
			db.Exec(t, originalInit(t))
			if _, _, err := auth.Migrate(context.Background(), mysqlConfig(db)); err != nil {
				t.Fatal(err)
			}
			ro := restrictedAccount(t, db, grant)
			if _, _, err := auth.Migrate(context.Background(), ro); err == nil || !strings.Contains(err.Error(), "denied") {
				t.Fatalf("auth migrate with %s only: %v, want a refusal", grant, err)
			}
			s := newStackWith(t, db, ro, options{noMigrate: true})
			if status, body := s.login(t, "georgio@email.com", "Admin123"); status != 200 {
				t.Fatalf("login with a %s account: %d %q", grant, status, body)
			}
			wantHashed := strings.Contains(grant, "UPDATE")
			if got := auth.IsHash(s.password(t, "georgio@email.com")); got != wantHashed {
				t.Fatalf("with %s the row was re-hashed: %v, want %v", grant, got, wantHashed)
			}
			if status, _ := s.login(t, "georgio@email.com", "Admin123"); status != 200 {
				t.Fatalf("second login with a %s account: %d", grant, status)
			}
		})
	}
	t.Run("account without SELECT", func(t *testing.T) {
		t.Parallel()
		db := testenv.MySQL(t)
		if _, _, err := auth.Migrate(context.Background(), mysqlConfig(db)); err != nil {
			t.Fatal(err)
		}
		ro := restrictedAccount(t, db, "INSERT")
		_, err := auth.OpenStore(context.Background(), ro)
		if !errors.Is(err, auth.ErrSchema) || !strings.Contains(err.Error(), "GRANT SELECT, UPDATE") {
			t.Fatalf("OpenStore without SELECT: %v, want ErrSchema naming the grant", err)
		}
	})
}

// Item 9: the original gateway sends no X-Forwarded-For, so all its users
// arrive from its one address. Listed in SHARED_CLIENT_PEERS, that address
// is not one client's bucket; every account still has its own bucket of
// failed logins, whatever address they come from.
func TestSharedClientPeers(t *testing.T) {
	t.Parallel()
	t.Run("without the setting, one bucket for everyone", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, options{loginRate: 0.01, loginBurst: 3})
		s.addUser(t, "a@example.com", "pw-a", false)
		s.addUser(t, "b@example.com", "pw-b", false)
		for i := range 3 {
			if status, _ := s.login(t, "a@example.com", "pw-a"); status != 200 {
				t.Fatalf("login %d of a: %d", i, status)
			}
		}
		if status, _ := s.login(t, "b@example.com", "pw-b"); status != http.StatusTooManyRequests {
			t.Fatalf("b after a's logins from the same address: %d, want 429 (the defect the setting is for)", status)
		}
	})
	t.Run("with the setting", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, options{loginRate: 0.01, loginBurst: 3, accountRate: 0.001, accountBurst: 4, sharedPeers: "127.0.0.1"})
		s.addUser(t, "a@example.com", "pw-a", false)
		s.addUser(t, "b@example.com", "pw-b", false)
		for i := range 10 {
			if status, _ := s.login(t, "a@example.com", "pw-a"); status != 200 {
				t.Fatalf("login %d of a through the shared peer: %d, want 200", i, status)
			}
		}
		for i := range 4 {
			if status, _ := s.login(t, "b@example.com", "guess"); status != 401 {
				t.Fatalf("wrong password %d for b: %d, want 401", i, status)
			}
		}
		if status, _ := s.login(t, "B@example.com", "pw-b"); status != http.StatusTooManyRequests {
			t.Fatalf("b after 4 failures (another case of the email): %d, want 429", status)
		}
		if status, _ := s.login(t, "a@example.com", "pw-a"); status != 200 {
			t.Fatalf("a while b is limited: %d, want 200", status)
		}
	})
	t.Run("an account's failures from many addresses", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, options{accountRate: 0.001, accountBurst: 3})
		s.addUser(t, "c@example.com", "pw-c", false)
		for i := range 3 {
			status, _, _ := do(t, "POST", s.url+"/login", map[string]string{
				"Authorization": basic("c@example.com", "guess"), "X-Forwarded-For": fmt.Sprintf("203.0.113.%d", i)})
			if status != 401 {
				t.Fatalf("guess %d: %d, want 401", i, status)
			}
		}
		status, _, h := do(t, "POST", s.url+"/login", map[string]string{
			"Authorization": basic("c@example.com", "pw-c"), "X-Forwarded-For": "198.51.100.7"})
		if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
			t.Fatalf("c from a fourth address after 3 failures: %d (Retry-After %q), want 429", status, h.Get("Retry-After"))
		}
	})
}

func mysqlConfig(db testenv.MySQLDB) auth.MySQLConfig {
	return auth.MySQLConfig{Host: db.Host, Port: db.Port, User: db.User, Password: db.Password, DB: db.Name}
}

// restrictedAccount creates a MySQL account that may do only grant on the
// test database's user table, dropped after the test.
func restrictedAccount(t *testing.T, db testenv.MySQLDB, grant string) auth.MySQLConfig {
	t.Helper()
	name := testenv.Name("ro") // 13 characters: within MySQL's 32 for user names
	db.Exec(t, fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY 'ro-pw'; GRANT %s ON `%s`.`user` TO '%s'@'%%'", name, grant, db.Name, name))
	t.Cleanup(func() { db.Exec(t, fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", name)) })
	c := mysqlConfig(db)
	c.User, c.Password = name, "ro-pw"
	return c
}
