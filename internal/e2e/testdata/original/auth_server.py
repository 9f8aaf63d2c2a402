"""An auth service that behaves as the original's does, as its documented behaviour describes it.

  POST /login     HTTP Basic credentials checked against the --user list:
                  200 with a token minted as auth_token.py does (PyJWT, HS256,
                  $JWT_SECRET, admin: true); 401 "missing credentials" without
                  Basic credentials; 401 "invalid credentials" on a wrong email
                  or password.
  POST /validate  the token after "Bearer " decoded with PyJWT (HS256): 200
                  with its claims as JSON; 403 "not authorized" when invalid or
                  expired. Like the original, a missing header or an empty
                  token is not handled: 500, as Flask answers an exception.
  anything else   404 (there is no /healthz), 405 for GET on those two paths.

Listens on 127.0.0.1:--port (0: any free port) and prints "listening on
127.0.0.1:PORT" once it does; logs each request to stderr; exits when its
stdin closes (the test holds it open), so it never outlives the test.

Written from the contract (not from the original's code) for
internal/e2e/original_test.go. Run with Debian's /usr/bin/python3.
"""

import argparse
import base64
import binascii
import http.server
import json
import os
import sys
import threading
import traceback

import jwt

from auth_token import mint

p = argparse.ArgumentParser(description="the original auth, as the contract describes it")
p.add_argument("--port", type=int, default=0)
p.add_argument("--user", action="append", default=[], metavar="EMAIL:PASSWORD")
a = p.parse_args()
users = dict(u.split(":", 1) for u in a.user)
secret = os.environ["JWT_SECRET"]
HTML = "text/html; charset=utf-8"  # what Flask sends for a returned string


def login(headers):
    scheme, _, credentials = (headers.get("Authorization") or "").partition(" ")
    try:
        email, sep, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if scheme.lower() != "basic" or not sep:
        return 401, "missing credentials", HTML
    if email not in users or users[email] != password:
        return 401, "invalid credentials", HTML
    return 200, mint(email, secret), HTML


def validate(headers):
    # The token is the header's second word. As in the original, nothing
    # checks that there is one: no header or no token raises, and the
    # server answers 500.
    encoded = headers["Authorization"].split(" ")[1]
    if not encoded:
        raise ValueError("empty bearer token")
    try:
        claims = jwt.decode(encoded, secret, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return 403, "not authorized", HTML
    return 200, json.dumps(claims), "application/json"


routes = {"/login": login, "/validate": validate}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        route = routes.get(self.path)
        if route is None:
            return self.answer(404, "Not Found", HTML)
        try:
            status, body, ctype = route(self.headers)
        except Exception:
            traceback.print_exc()
            status, body, ctype = 500, "Internal Server Error", HTML
        self.answer(status, body, ctype)

    def do_GET(self):
        if self.path in routes:
            return self.answer(405, "Method Not Allowed", HTML)
        self.answer(404, "Not Found", HTML)

    def answer(self, status, body, ctype):
        b = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
