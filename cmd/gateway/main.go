// Command gateway is the public entry point on PORT (8080): POST /login,
// POST /upload, GET /download, GET /jobs, GET /jobs/{id} and the web page;
// OPS_PORT (9080) serves /healthz, /readyz and /metrics.
package main

import (
	"mp3converter/internal/app"
	"mp3converter/internal/gateway"
)

var version = "dev"

func main() { app.Service("gateway", version, gateway.Run) }
