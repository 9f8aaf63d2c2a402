package ffmpeg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
)

// SniffFaststart reads the start of r to tell whether it is an MP4/MOV
// (ISO base media file) whose moov box, the index, comes before its mdat
// box, the media data: such a file can be converted from a pipe. It reads
// past the end of moov (at most limit bytes in all) and returns the bytes
// read, which the caller must replay before the rest of r.
func SniffFaststart(r io.Reader, limit int) (prefix []byte, ok bool, err error) {
	buf := make([]byte, 0, 64<<10)
	// fill reads until buf holds n bytes; false if r ends first or n is
	// beyond limit.
	fill := func(n int64) (bool, error) {
		if n > int64(limit) {
			return false, nil
		}
		for int64(len(buf)) < n {
			if len(buf) == cap(buf) {
				nb := make([]byte, len(buf), min(max(2*cap(buf), int(n)), limit))
				copy(nb, buf)
				buf = nb
			}
			k, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+k]
			if errors.Is(err, io.EOF) {
				return int64(len(buf)) >= n, nil
			}
			if err != nil {
				return false, err
			}
		}
		return true, nil
	}
	var off int64
	for i := 0; i < 32; i++ { // top-level boxes before moov: ftyp, free, wide, …
		if ok, err := fill(off + 16); err != nil || !ok {
			return buf, false, err // a read error, or too little left to tell
		}
		size := int64(binary.BigEndian.Uint32(buf[off:]))
		typ := string(buf[off+4 : off+8])
		hdr := int64(8)
		if size == 1 {
			size, hdr = int64(binary.BigEndian.Uint64(buf[off+8:])), 16
		}
		if size < hdr || (i == 0 && !topLevelBox[typ]) {
			return buf, false, nil // size 0 (to the end), corrupt, or not ISO BMFF
		}
		switch typ {
		case "moov":
			ok, err := fill(off + size)
			return buf, ok, err
		case "mdat", "moof":
			return buf, false, nil
		}
		off += size
	}
	return buf, false, nil
}

// topLevelBox lists the boxes an MP4 or QuickTime file may start with.
var topLevelBox = map[string]bool{"ftyp": true, "moov": true, "free": true, "skip": true,
	"wide": true, "mdat": true, "pnot": true, "uuid": true, "styp": true}

// Fragmented reports whether head, the start of a file, is a fragmented
// MP4/MOV (ISO base media file: an index that says fragments follow, mvex,
// or fragment boxes, moof, styp, sidx, at the top level). ffmpeg reads
// every fragment's header when it opens such a file, seeking over each
// fragment's media.
func Fragmented(head []byte) bool {
	var off int64
	for i := 0; i < 32 && off+8 <= int64(len(head)); i++ {
		size := int64(binary.BigEndian.Uint32(head[off:]))
		typ := string(head[off+4 : off+8])
		hdr := int64(8)
		if size == 1 {
			if off+16 > int64(len(head)) {
				return false
			}
			size, hdr = int64(binary.BigEndian.Uint64(head[off+8:])), 16
		}
		if i == 0 && !topLevelBox[typ] {
			return false
		}
		switch typ {
		case "moof", "styp", "sidx":
			return true
		case "moov":
			end := int64(len(head))
			if size >= hdr && off+size < end {
				end = off + size
			}
			return bytes.Contains(head[off+hdr:end], []byte("mvex"))
		case "mdat":
			return false
		}
		if size < hdr {
			return false
		}
		off += size
	}
	return false
}
