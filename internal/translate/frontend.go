package translate

import (
	"crypto/tls"
	"net/netip"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
)

// frontend is what one listen address serves, being built: meshgate's own
// addresses (Ingresses and the Gateways merged onto them), or one port of
// the address of a Gateway of its own (Options.GatewayAddressPool).
// Gateway processors write a listener's hosts, certificates and
// passthrough names into its listener's frontend (listenerBuild.fe), so
// Gateways on different addresses, and a Gateway's listeners on
// different ports, never see each other's routes.
type frontend struct {
	// addr is the frontend's address; the zero Addr is meshgate's own.
	addr netip.Addr
	// port and kind are the port of a Gateway's own address the frontend
	// serves and its server; zero for meshgate's own addresses (both
	// ports) and for the address-level frontend of a Gateway
	// (gatewayBuild.fe), which no table includes.
	port        int
	kind        routing.FrontendKind
	tlsHosts    map[string]*tlsHostBuild // by host pattern
	vhosts      map[string]*vhostBuild   // by host pattern, "" = catch-all
	passthrough map[string]passthroughEntry
	// terminated are the names of TLSRoutes on TLS listeners in mode
	// Terminate (routing.Table.Terminated).
	terminated map[string]passthroughEntry
	// gwDefaultCert is the certificate of the oldest HTTPS Gateway
	// listener without a hostname here, gwDefaultPolicy its policy; it
	// serves SNI names no TLS host claims (on meshgate's own addresses
	// only unless Options.DefaultCertificate names one).
	gwDefaultCert   *tls.Certificate
	gwDefaultPolicy *routing.TLSPolicy
}

func newFrontend(addr netip.Addr) *frontend {
	return &frontend{
		addr:        addr,
		tlsHosts:    map[string]*tlsHostBuild{},
		vhosts:      map[string]*vhostBuild{},
		passthrough: map[string]passthroughEntry{},
		terminated:  map[string]passthroughEntry{},
	}
}

func (fe *frontend) vhost(host string) *vhostBuild {
	vb := fe.vhosts[host]
	if vb == nil {
		vb = &vhostBuild{name: host}
		fe.vhosts[host] = vb
	}
	return vb
}

// tlsCovered reports whether HTTPS for host is served with a TLS host of
// its own (exact, or a wildcard covering it) from an Ingress' spec.tls,
// which makes plain HTTP for it redirect. Gateway listener certificates do
// not: a Gateway says with its listeners what it serves over plain HTTP.
func (fe *frontend) tlsCovered(host string) bool {
	if host == "" {
		return false
	}
	if th := fe.tlsHosts[host]; th != nil && th.owner != nil {
		return true
	}
	if isWildcard(host) {
		return false
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		th := fe.tlsHosts["*"+host[i:]]
		return th != nil && th.owner != nil
	}
	return false
}

// fillHTTP writes the virtual hosts and passthrough names of fe into t.
func (fe *frontend) fill(t *routing.Table) {
	for name, vb := range fe.vhosts {
		vh := vb.finish(fe)
		switch {
		case name == "":
			t.HTTP.CatchAll = vh
		case isWildcard(name):
			t.HTTP.Wildcards[name[2:]] = vh
			if vb.gateway {
				t.HTTP.Suffixes[name[2:]] = vh
			}
		default:
			t.HTTP.Hosts[name] = vh
		}
	}
	for name, th := range fe.tlsHosts {
		h := &routing.TLSHost{Name: name, Certificate: th.cert, Policy: th.policy, Stream: th.stream}
		if isWildcard(name) {
			t.TLS.Wildcards[name[2:]] = h
		} else {
			t.TLS.Exact[name] = h
		}
	}
	for name, e := range fe.passthrough {
		t.Passthrough[name] = e.backend
		if e.gateway && isWildcard(name) {
			t.PassthroughSuffixes[name[2:]] = e.backend
		}
	}
	for name, e := range fe.terminated {
		if t.Terminated == nil {
			t.Terminated, t.TerminatedSuffixes = map[string]*routing.Backend{}, map[string]*routing.Backend{}
		}
		t.Terminated[name] = e.backend
		if isWildcard(name) {
			t.TerminatedSuffixes[name[2:]] = e.backend
		}
	}
}
