package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// maxRanges is the most byte ranges a download answers one by one; a
// request asking for more gets the whole file (200), as common web servers
// do: each range is a storage read, and 2,000 one-byte ranges cost far more
// than the file.
const maxRanges = 16

// byteRange is [start, end) of a file.
type byteRange struct{ start, end int64 }

// planRanges reads the request's Range header against a file of size bytes
// and rewrites it for http.ServeContent: more than maxRanges ranges → the
// header is dropped (the whole file); otherwise the satisfiable ranges,
// sorted, with overlapping and adjacent ones merged. It returns the ranges
// the response will read. A header it cannot parse, or whose ranges are all
// past the end, is left for ServeContent to refuse (416).
func planRanges(r *http.Request, size int64) []byteRange {
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
	var out []byteRange
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		first, last, ok := strings.Cut(p, "-")
		if !ok {
			return nil
		}
		var rg byteRange
		switch {
		case first == "": // the last n bytes
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n <= 0 {
				return nil
			}
			rg = byteRange{start: max(size-n, 0), end: size}
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
			rg = byteRange{start: a, end: min(b+1, size)}
		}
		out = append(out, rg)
	}
	if len(out) == 0 {
		return nil
	}
	slices.SortFunc(out, func(x, y byteRange) int { return int(min(max(x.start-y.start, -1), 1)) })
	merged := out[:1]
	for _, rg := range out[1:] {
		if last := &merged[len(merged)-1]; rg.start <= last.end {
			last.end = max(last.end, rg.end)
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
		b.WriteString(strconv.FormatInt(rg.start, 10) + "-" + strconv.FormatInt(rg.end-1, 10))
	}
	r.Header.Set("Range", b.String())
	return merged
}
