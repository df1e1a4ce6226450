// CoreDNS for the test cluster with only the plugins its Corefile uses: the `kubernetes` plugin
// answers cluster.local names from the API server; there is no `forward`, so no name outside
// the cluster resolves. The plugins register themselves in init(); dnsserver.Directives (the
// upstream order) decides the order they run in, so nothing else needs generating.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
