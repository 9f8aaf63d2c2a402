package token

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testdata/pyjwt-tokens.json is a copy of shared/fixtures/pyjwt-tokens.json:
// tokens made by PyJWT 2.x (the original's library) and hand-made attacks.
type fixture struct {
	Secret string            `json:"secret"`
	Accept map[string]string `json:"accept"`
	Refuse map[string]string `json:"refuse"`
}

func loadFixture(t *testing.T) fixture {
	t.Helper()
	b, err := os.ReadFile("testdata/pyjwt-tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Accept) == 0 || len(f.Refuse) == 0 {
		t.Fatal("fixture has no tokens")
	}
	return f
}

func TestPyJWTTokens(t *testing.T) {
	f := loadFixture(t)
	iss, err := New(f.Secret, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range f.Accept {
		t.Run("accept/"+name, func(t *testing.T) {
			c, err := iss.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !strings.Contains(c.Username, "@") || c.Exp != 4102444800 || c.Iat != 1795737600 {
				t.Fatalf("claims = %+v", c)
			}
			if want := name == "valid_admin"; c.Admin != want {
				t.Fatalf("admin = %v, want %v", c.Admin, want)
			}
			// The original's admin claim makes nobody an administrator here.
			if c.IsAdmin() {
				t.Fatalf("PyJWT token %s is an administrator of this suite: %+v", name, c)
			}
		})
	}
	for name, tok := range f.Refuse {
		t.Run("refuse/"+name, func(t *testing.T) {
			if c, err := iss.Verify(tok); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalid", c, err)
			}
		})
	}
}

func TestRefusesMoreAttacks(t *testing.T) {
	iss, _ := New("sarcasm", time.Hour)
	other, _ := New("another-secret", time.Hour)
	wrong, _ := other.Issue("a@b.c", true)
	noUser, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("sarcasm"))
	badType, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"username": 42, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("sarcasm"))
	for name, tok := range map[string]string{
		"empty": "", "garbage": "not-a-jwt", "dots": "..", "wrong secret": wrong,
		"no username": noUser, "username not a string": badType,
		"long": strings.Repeat("a", 20000),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := iss.Verify(tok); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// A token we issue has PyJWT's header and the original's claim names and JSON types.
func TestIssuedTokenShape(t *testing.T) {
	iss, _ := New("sarcasm", 24*time.Hour)
	now := time.Unix(1795737600, 0)
	iss.now = func() time.Time { return now }
	tok, err := iss.Issue("georgio@email.com", false)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", tok, len(parts))
	}
	var header map[string]any
	decodeSeg(t, parts[0], &header)
	if len(header) != 2 || header["alg"] != "HS256" || header["typ"] != "JWT" {
		t.Fatalf("header = %v", header)
	}
	var claims map[string]any
	decodeSeg(t, parts[1], &claims)
	if len(claims) != 5 {
		t.Fatalf("claims = %v, want exactly username, exp, iat, admin, role", claims)
	}
	if claims["username"] != "georgio@email.com" || claims["admin"] != false || claims["role"] != "user" ||
		claims["iat"] != float64(1795737600) || claims["exp"] != float64(1795737600+86400) {
		t.Fatalf("claims = %v", claims)
	}
	// iat and exp are JSON integers, as PyJWT writes them.
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(raw), `"exp":1795824000`) {
		t.Fatalf("payload %s: exp not an integer", raw)
	}
	c, err := iss.Verify(tok)
	if err != nil || c.Username != "georgio@email.com" {
		t.Fatalf("Verify own token = %+v, %v", c, err)
	}
}

// Administrators are told apart by role, never by the original's admin
// claim; LegacyAdminClaim writes admin: true for everyone (what the
// original gateway demands) without making anyone an administrator.
func TestAdminClaims(t *testing.T) {
	for _, tc := range []struct {
		name              string
		legacy, admin     bool
		wantAdminClaim    bool
		wantRole          string
		wantAdministrator bool
	}{
		{name: "user", wantRole: "user"},
		{name: "admin", admin: true, wantAdminClaim: true, wantRole: "admin", wantAdministrator: true},
		{name: "user, legacy claim", legacy: true, wantAdminClaim: true, wantRole: "user"},
		{name: "admin, legacy claim", legacy: true, admin: true, wantAdminClaim: true, wantRole: "admin", wantAdministrator: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iss, _ := New("sarcasm", time.Hour, LegacyAdminClaim(tc.legacy))
			tok, err := iss.Issue("a@b.c", tc.admin)
			if err != nil {
				t.Fatal(err)
			}
			var raw map[string]any
			decodeSeg(t, strings.Split(tok, ".")[1], &raw)
			if raw["admin"] != tc.wantAdminClaim || raw["role"] != tc.wantRole {
				t.Fatalf("claims = %v, want admin %v role %q", raw, tc.wantAdminClaim, tc.wantRole)
			}
			c, err := iss.Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.IsAdmin() != tc.wantAdministrator {
				t.Fatalf("IsAdmin = %v for %+v", c.IsAdmin(), c)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	iss, _ := New("s", time.Hour)
	tok, _ := iss.Issue("a@b.c", false)
	iss.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := iss.Verify(tok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expired token verified: %v", err)
	}
}

func TestNewRefusesEmptySecret(t *testing.T) {
	if _, err := New("", time.Hour); err == nil {
		t.Fatal("New accepted an empty secret")
	}
}

func decodeSeg(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestFromHeader(t *testing.T) {
	for _, tc := range []struct {
		name, header, token string
		ok                  bool
	}{
		{"token", "Bearer abc.def.ghi", "abc.def.ghi", true},
		{"scheme in lower case", "bearer abc", "abc", true},
		{"spaces around the token", "Bearer   abc  ", "abc", true},
		{"no header", "", "", false},
		{"scheme alone", "Bearer", "", false},
		{"scheme and a space", "Bearer ", "", false},
		{"scheme and spaces", "Bearer    ", "", false},
		{"scheme and a tab", "Bearer \t", "", false},
		{"basic", "Basic eDp5", "", false},
		{"no space after the scheme", "Bearerabc", "", false},
		{"token alone", "abc.def.ghi", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, ok := FromHeader(tc.header)
			if tok != tc.token || ok != tc.ok {
				t.Fatalf("FromHeader(%q) = %q, %v; want %q, %v", tc.header, tok, ok, tc.token, tc.ok)
			}
		})
	}
}
