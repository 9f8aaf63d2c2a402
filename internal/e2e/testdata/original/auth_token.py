"""Mint a token as the original auth does, with PyJWT.

HS256 signed with $JWT_SECRET; claims username, exp (now + 1 day), iat (now)
and admin: true (the original wrote it into every token). Prints the token.

Written from the suite's documented contract (README.md) (not from the original's code) for
internal/e2e/original_test.go; auth_server.py mints its tokens with mint().
Run with Debian's /usr/bin/python3.
"""

import datetime
import os
import sys

import jwt


def mint(username, secret):
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    claims = {"username": username, "exp": now + datetime.timedelta(days=1), "iat": now, "admin": True}
    return jwt.encode(claims, secret, algorithm="HS256")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: JWT_SECRET=… auth_token.py USERNAME")
    print(mint(sys.argv[1], os.environ["JWT_SECRET"]))
