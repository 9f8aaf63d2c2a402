// Command notification is the notification service: it consumes MP3_QUEUE,
// records each MP3's outcome in MongoDB (the job done, the MP3's owner) and
// emails each user when their MP3 is ready or the conversion failed.
// PORT (8082) serves /healthz, /readyz and /metrics only.
package main

import (
	"mp3converter/internal/app"
	"mp3converter/internal/notification"
)

var version = "dev"

func main() { app.Service("notification", version, notification.Run) }
