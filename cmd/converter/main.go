// Command converter consumes VIDEO_QUEUE, converts each video's audio to MP3
// with ffmpeg, stores it in GridFS "mp3s" and announces it on MP3_QUEUE. Its
// PORT (8081) serves only /healthz, /readyz and /metrics.
package main

import (
	"mp3converter/internal/app"
	"mp3converter/internal/converter"
)

var version = "dev"

func main() { app.Service("converter", version, converter.Run) }
