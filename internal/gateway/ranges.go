package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"mp3converter/internal/gridfs"
)

// maxRanges is the most byte ranges a download answers one by one; a
// request asking for more gets the whole file (200), as common web servers
// do: each range is a storage read, and 2,000 one-byte ranges cost far more
// than the file.
const maxRanges = 16

// planRanges reads the request's Range header against a file of size bytes
// and rewrites it for http.ServeContent: more than maxRanges ranges → the
// header is dropped (the whole file); otherwise the satisfiable ranges,
// sorted, with overlapping and adjacent ones merged. It returns the ranges
// the response will read (for gridfs.NewSeeker). A header it cannot parse,
// or whose ranges are all past the end, is left for ServeContent to refuse
// (416).
func planRanges(r *http.Request, size int64) []gridfs.Range {
	h := r.Header.Get("Range")
	if h == "" {
		return nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return nil
	}
	parts := strings.Split(spec, ",")
	if len(parts) > maxRanges {
		r.Header.Del("Range")
		return nil
	}
	var out []gridfs.Range
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		first, last, ok := strings.Cut(p, "-")
		if !ok {
			return nil
		}
		var rg gridfs.Range
		switch {
		case first == "": // the last n bytes
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n <= 0 {
				return nil
			}
			rg = gridfs.Range{Start: max(size-n, 0), End: size}
		default:
			a, err := strconv.ParseInt(first, 10, 64)
			if err != nil || a < 0 {
				return nil
			}
			b := size - 1
			if last != "" {
				if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
					return nil
				}
			}
			if a >= size {
				continue // unsatisfiable; the others may be
			}
			rg = gridfs.Range{Start: a, End: min(b+1, size)}
		}
		out = append(out, rg)
	}
	if len(out) == 0 {
		return nil
	}
	slices.SortFunc(out, func(x, y gridfs.Range) int { return int(min(max(x.Start-y.Start, -1), 1)) })
	merged := out[:1]
	for _, rg := range out[1:] {
		if last := &merged[len(merged)-1]; rg.Start <= last.End {
			last.End = max(last.End, rg.End)
			continue
		}
		merged = append(merged, rg)
	}
	var b strings.Builder
	b.WriteString("bytes=")
	for i, rg := range merged {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(rg.Start, 10) + "-" + strconv.FormatInt(rg.End-1, 10))
	}
	r.Header.Set("Range", b.String())
	return merged
}
