//go:build tools

// Package tools pins the versions of the development servers that
// deploy/stack.sh builds: Mailpit (SMTP server with an HTTP API) and
// FerretDB (MongoDB wire protocol on PostgreSQL), the latter through the
// wrapper in ./ferretdb.
package tools

import (
	_ "github.com/axllent/mailpit"
)
