// Package message defines the JSON that travels on the video and mp3 queues,
// exactly the original's shape plus optional fields:
//
//	{"video_fid": "<hex>", "mp3_fid": null or "<hex>", "username": "<email>"}
//
// Consumers ignore fields they do not know, so the original's services and
// these can be mixed.
package message

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"

	"mp3converter/internal/logging"
)

// ErrMalformed means a message cannot be understood; retrying cannot help.
var ErrMalformed = errors.New("malformed message")

// Conversion is one message. The gateway publishes it on VIDEO_QUEUE with
// MP3FID nil; the converter publishes it on MP3_QUEUE with MP3FID set, or
// with Error set when the conversion failed for good.
type Conversion struct {
	VideoFID string  `json:"video_fid"`
	MP3FID   *string `json:"mp3_fid"`
	Username string  `json:"username"`
	// Additions of this port (the original ignores them).
	Filename string `json:"filename,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Encode returns the JSON.
func (c Conversion) Encode() []byte {
	b, _ := json.Marshal(c) // a struct of strings always marshals
	return b
}

// Decode parses and checks a message: video_fid must be a 24-hex-digit
// ObjectId, mp3_fid null or one, username non-empty.
func Decode(body []byte) (Conversion, error) {
	var c Conversion
	if err := json.Unmarshal(body, &c); err != nil {
		return Conversion{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !IsObjectID(c.VideoFID) {
		return Conversion{}, fmt.Errorf("%w: video_fid %q is not a 24-hex-digit id", ErrMalformed, logging.Clip(c.VideoFID, 40))
	}
	if c.MP3FID != nil && !IsObjectID(*c.MP3FID) {
		return Conversion{}, fmt.Errorf("%w: mp3_fid %q is not a 24-hex-digit id", ErrMalformed, logging.Clip(*c.MP3FID, 40))
	}
	if strings.TrimSpace(c.Username) == "" {
		return Conversion{}, fmt.Errorf("%w: username is empty", ErrMalformed)
	}
	return c, nil
}

// IsObjectID reports whether s is 24 hex digits.
func IsObjectID(s string) bool {
	if len(s) != 24 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Filename is the name of an uploaded file as it travels in a message and
// is stored: its base name (either slash), without control characters, at
// most 255 bytes; "" when nothing usable is left.
func Filename(name string) string {
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, name)
	if len(name) > 255 {
		name = strings.ToValidUTF8(name[:255], "")
	}
	if name == "." || name == "/" {
		return ""
	}
	return name
}
