package notification

import (
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net/mail"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"mp3converter/internal/downloadlink"
	"mp3converter/internal/logging"
	"mp3converter/internal/message"
)

// ErrInvalid is wrapped by Compose's errors: the message cannot become an
// email (no usable recipient, a filename with control characters, neither
// an MP3 nor an error). Retrying cannot help.
var ErrInvalid = errors.New("invalid notification")

// Subjects of the two emails; SubjectReady is the original's.
const (
	SubjectReady  = "MP3 Download"
	SubjectFailed = "MP3 conversion failed"
)

const (
	maxAddressLen  = 254  // RFC 5321 path limit
	maxFilenameLen = 255  // bytes; longer ones are rejected
	maxReasonLen   = 1000 // runes of the failure reason shown
)

// Email is one notification, ready to send.
type Email struct {
	To        string // a bare address, checked
	Subject   string
	Text      string // text/plain body
	HTML      string // text/html alternative
	MessageID string // Message-ID without the angle brackets
}

// Composer turns queue messages into emails.
type Composer struct {
	publicURL string // no trailing slash; empty: no links
	idDomain  string // right-hand side of the Message-IDs
	links     *downloadlink.Signer
	linkTTL   time.Duration
}

// NewComposer returns a Composer. publicURL is the gateway's base URL for
// links (empty leaves them out); from is the sender, whose domain ends the
// Message-IDs.
func NewComposer(publicURL, from string) (*Composer, error) {
	a, err := ParseFrom(from)
	if err != nil {
		return nil, fmt.Errorf("sender %q: %w", from, err)
	}
	domain := "localhost"
	if i := strings.LastIndexByte(a.Address, '@'); i >= 0 && i < len(a.Address)-1 {
		domain = a.Address[i+1:]
	}
	return &Composer{publicURL: strings.TrimRight(publicURL, "/"), idDomain: domain}, nil
}

// SignLinks makes the success emails carry a signed one-click download
// link (with a public URL), valid for ttl from the moment the email is
// composed, made for the recipient: the gateway opens it only if the
// recipient owns the MP3. Call it before the Composer is used.
func (c *Composer) SignLinks(s *downloadlink.Signer, ttl time.Duration) error {
	if s == nil || ttl <= 0 {
		return fmt.Errorf("download links: want a signer and a positive lifetime (got %s)", ttl)
	}
	c.links, c.linkTTL = s, ttl
	return nil
}

// Compose builds the email for one message of MP3_QUEUE: the MP3 is ready
// (mp3_fid set), or the conversion failed (error set). Errors wrap
// ErrInvalid.
func (c *Composer) Compose(m message.Conversion) (Email, error) {
	to, err := CheckRecipient(m.Username)
	if err != nil {
		return Email{}, err
	}
	if m.Filename != "" {
		if err := checkFilename(m.Filename); err != nil {
			return Email{}, err
		}
	}
	data := emailData{Filename: m.Filename, VideoFID: m.VideoFID, PublicURL: c.publicURL}
	var (
		subject, id string
		text        *texttemplate.Template
		html        *htmltemplate.Template
	)
	switch {
	case m.Error != "":
		subject, text, html = SubjectFailed, failedText, failedHTML
		data.Reason = cleanReason(m.Error)
		// One failure report per video: a redelivered message gets the same
		// Message-ID, which lets mailboxes (Gmail) drop the duplicate.
		id = "failed-" + m.VideoFID + "@" + c.idDomain
	case m.MP3FID != nil:
		subject, text, html = SubjectReady, readyText, readyHTML
		data.FID = *m.MP3FID
		if c.publicURL != "" {
			data.Link = c.publicURL + "/?download=" + data.FID
			data.APIURL = c.publicURL + "/download?fid=" + data.FID
			if c.links != nil {
				// The MAC is over the canonical (lowercase) id, as the
				// gateway checks it.
				link := c.links.Sign(strings.ToLower(data.FID), to, time.Now().Add(c.linkTTL))
				data.OneClick = link.URL(c.publicURL)
				data.OneClickUntil = link.Expires.UTC().Format("Mon, 2 Jan 2006 15:04 MST")
			}
		}
		id = "mp3-" + data.FID + "@" + c.idDomain
	default:
		return Email{}, fmt.Errorf("%w: neither mp3_fid nor error is set", ErrInvalid)
	}
	var tb, hb strings.Builder
	if err := text.Execute(&tb, data); err != nil {
		return Email{}, fmt.Errorf("render text body: %w", err)
	}
	if err := html.Execute(&hb, data); err != nil {
		return Email{}, fmt.Errorf("render html body: %w", err)
	}
	return Email{To: to, Subject: subject, Text: tb.String(), HTML: hb.String(), MessageID: id}, nil
}

type emailData struct {
	FID       string // the MP3's id
	VideoFID  string
	Filename  string // the uploaded file's name, may be empty
	Reason    string // why the conversion failed
	Link      string // opens the download in the browser
	APIURL    string // GET with a bearer token
	PublicURL string
	// OneClick is the signed download link, working until OneClickUntil
	// with no login; empty without DOWNLOAD_LINK_KEY.
	OneClick      string
	OneClickUntil string
}

// The original's whole body was "mp3 file_id: <fid> is now ready!": that
// line stays as it was, for anyone who parses it.
var readyText = texttemplate.Must(texttemplate.New("ready.txt").Parse(`Hello,

mp3 file_id: {{.FID}} is now ready!
{{if .Filename}}
It is the audio of {{.Filename}}.
{{end}}
{{- if .OneClick}}
Download it with one click, no login needed (the link works until {{.OneClickUntil}};
anyone who has it can download the MP3 until then, so do not pass it on):
{{.OneClick}}

Or open it in your browser (you will be asked to log in):
{{.Link}}

Or through the API, with the token you get from POST {{.PublicURL}}/login:
GET {{.APIURL}}
Authorization: Bearer <token>
{{else if .Link}}
Download it in your browser (you will be asked to log in):
{{.Link}}

Or through the API, with the token you get from POST {{.PublicURL}}/login:
GET {{.APIURL}}
Authorization: Bearer <token>
{{else}}
Download it through the API, with the token you get from POST /login:
GET /download?fid={{.FID}}
Authorization: Bearer <token>
{{end}}`))

var readyHTML = htmltemplate.Must(htmltemplate.New("ready.html").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>MP3 Download</title></head>
<body style="font-family: sans-serif">
<p>Hello,</p>
<p>mp3 file_id: <code>{{.FID}}</code> is now ready!</p>
{{if .Filename}}<p>It is the audio of <strong>{{.Filename}}</strong>.</p>
{{end}}{{if .OneClick}}<p><a href="{{.OneClick}}">Download the MP3</a> (no login needed; the link works until {{.OneClickUntil}}, and anyone who has it can use it until then, so do not pass it on).</p>
<p>Or <a href="{{.Link}}">open it in your browser</a> (you will be asked to log in).</p>
<p>Or through the API, with the token you get from <code>POST {{.PublicURL}}/login</code>:<br>
<code>GET {{.APIURL}}</code> with the header <code>Authorization: Bearer &lt;token&gt;</code></p>
{{else if .Link}}<p><a href="{{.Link}}">Download the MP3</a> (you will be asked to log in).</p>
<p>Or through the API, with the token you get from <code>POST {{.PublicURL}}/login</code>:<br>
<code>GET {{.APIURL}}</code> with the header <code>Authorization: Bearer &lt;token&gt;</code></p>
{{else}}<p>Download it through the API, with the token you get from <code>POST /login</code>:<br>
<code>GET /download?fid={{.FID}}</code> with the header <code>Authorization: Bearer &lt;token&gt;</code></p>
{{end}}</body></html>
`))

var failedText = texttemplate.Must(texttemplate.New("failed.txt").Parse(`Hello,

The conversion of {{if .Filename}}{{.Filename}}{{else}}your video (file_id {{.VideoFID}}){{end}} to MP3 failed:

{{.Reason}}

Uploading the same file again would fail the same way: please check that it is a video with a sound track, or try another file{{if .PublicURL}} at {{.PublicURL}}/{{end}}.
`))

var failedHTML = htmltemplate.Must(htmltemplate.New("failed.html").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>MP3 conversion failed</title></head>
<body style="font-family: sans-serif">
<p>Hello,</p>
<p>The conversion of {{if .Filename}}<strong>{{.Filename}}</strong>{{else}}your video (file_id <code>{{.VideoFID}}</code>){{end}} to MP3 failed:</p>
<blockquote style="white-space: pre-wrap">{{.Reason}}</blockquote>
<p>Uploading the same file again would fail the same way: please check that it is a video with a sound track, or try another file{{if .PublicURL}} at <a href="{{.PublicURL}}/">{{.PublicURL}}</a>{{end}}.</p>
</body></html>
`))

// CheckRecipient returns the username as a recipient if it is a bare email
// address ("user@example.com", no display name, no comments, no control
// characters), else an error wrapping ErrInvalid. This is what makes header
// injection impossible: nothing with CR or LF reaches a header.
func CheckRecipient(username string) (string, error) {
	switch {
	case hasControl(username):
		return "", fmt.Errorf("%w: username %q contains control characters", ErrInvalid, logging.Clip(username, 80))
	case len(username) > maxAddressLen:
		return "", fmt.Errorf("%w: username is longer than %d bytes", ErrInvalid, maxAddressLen)
	}
	a, err := mail.ParseAddress(username)
	if err != nil {
		return "", fmt.Errorf("%w: username %q is not an email address: %w", ErrInvalid, logging.Clip(username, 80), err)
	}
	if a.Name != "" || a.Address != username || !strings.Contains(a.Address, "@") {
		return "", fmt.Errorf("%w: username %q is not a bare email address", ErrInvalid, logging.Clip(username, 80))
	}
	return a.Address, nil
}

func checkFilename(name string) error {
	switch {
	case hasControl(name):
		return fmt.Errorf("%w: filename %q contains control characters", ErrInvalid, logging.Clip(name, 80))
	case len(name) > maxFilenameLen:
		return fmt.Errorf("%w: filename is longer than %d bytes", ErrInvalid, maxFilenameLen)
	}
	return nil
}

// hasControl reports whether s is not valid UTF-8 or holds a control
// character (C0, DEL, C1) or a Unicode line or paragraph separator.
func hasControl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
	}) >= 0
}

// cleanReason makes the converter's error text safe to show: control
// characters other than newline and tab become spaces, and it is clipped.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(s, "�")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if utf8.RuneCountInString(s) > maxReasonLen {
		s = string([]rune(s)[:maxReasonLen]) + "…"
	}
	return s
}
