// Command etcd is etcd's own server binary, built from the pinned
// go.etcd.io/etcd/server/v3 module so no prebuilt download is needed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
