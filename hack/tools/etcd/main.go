// Command etcd is etcd's server, built from go.etcd.io/etcd/server/v3 so that
// envtest needs nothing but the Go module proxy (see hack/envtest-assets.sh).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
