// Command probe is copied into a throwaway container of a built image by
// `images.sh verify` and run there as the image's USER: it prints what the
// service would see (uid/gid, HOME, a shell or not, CA bundle, time zones,
// a writable /tmp) as key=value lines, and exits non-zero if /tmp is not
// writable or a path named with -need is missing.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	need := flag.String("need", "", "comma-separated paths that must exist")
	flag.Parse()
	fail := false
	fmt.Printf("uid=%d gid=%d home=%q\n", os.Getuid(), os.Getgid(), os.Getenv("HOME"))
	for _, p := range []string{"/bin/sh", "/etc/ssl/certs/ca-certificates.crt", "/usr/bin/ffmpeg"} {
		_, err := os.Stat(p)
		fmt.Printf("exists %s=%v\n", p, err == nil)
	}
	_, err := time.LoadLocation("Europe/Paris")
	fmt.Printf("tzdata=%v\n", err == nil)
	if f, err := os.CreateTemp("/tmp", "probe"); err != nil {
		fmt.Printf("tmp-writable=false (%v)\n", err)
		fail = true
	} else {
		fmt.Println("tmp-writable=true")
		f.Close()
		os.Remove(f.Name())
	}
	for _, p := range strings.Split(*need, ",") {
		if _, err := os.Stat(p); p != "" && err != nil {
			fmt.Printf("missing %s\n", p)
			fail = true
		}
	}
	if fail {
		os.Exit(1)
	}
}
