package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/meshgate/meshgate/internal/clusterstate"
	"github.com/meshgate/meshgate/internal/replica"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/translate"
)

// commonFlags are the data-plane and mesh flags shared by `standalone` and
// `run`. Their zero values are never used: register sets the defaults.
type commonFlags struct {
	httpsAddr     string
	httpAddr      string
	metricsAddr   string
	nodeName      string
	meshAddr      string
	clusterID     string
	proxyProtocol bool
	trusted       string
	underscores   bool
	forwarders    string
	http3         bool
	ingressClass  string
	l4ConfigMap   string
	l4BindIP      string
	redirectPort  int
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxConns      int
	shutdownGrace time.Duration
	sessionMode   string
	defaultCert   string
	sessionBudget int64
	logLevel      string
	pprofAddr     string
	followLoad    bool
	adminToken    string
	gwHTTPPort    int
	gwHTTPSPort   int
	gwPoolSpec    string
	gwPool        []netip.Addr // --gateway-address-pool, parsed by validate
	kvZones       []replica.KVZone
}

func (f *commonFlags) register(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&f.httpsAddr, "https-addr", "127.0.0.1:8443", "TLS listener address (TCP; its UDP twin with --http3)")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "plain HTTP listener address (empty disables)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "127.0.0.1:9101", "address of /metrics, /healthz, /readyz and /status/sessionmesh (empty disables)")
	fs.StringVar(&f.nodeName, "node-name", host, "this replica's name, unique in the cluster")
	fs.StringVar(&f.meshAddr, "mesh-addr", "", "session mesh listen address (empty: local session store only)")
	fs.StringVar(&f.clusterID, "cluster-id", "", "mesh cluster id (default: fingerprint of the mesh CA)")
	fs.BoolVar(&f.proxyProtocol, "proxy-protocol", false, "require a PROXY protocol v1/v2 header on the HTTPS and HTTP listeners and TCP services, from --trusted-proxies only (off: no PROXY header is ever parsed)")
	fs.StringVar(&f.trusted, "trusted-proxies", "", "comma-separated CIDRs of the load balancers that send PROXY protocol headers; required with --proxy-protocol, no default")
	fs.StringVar(&f.forwarders, "trusted-forwarders", "", "comma-separated CIDRs of proxies in front of meshgate whose X-Forwarded-For is kept and appended to (from any other client it is replaced by the client address)")
	fs.BoolVar(&f.underscores, "underscores-in-headers", false, "pass request header fields whose names contain underscores to backends (off: they are dropped, as nginx does, since CGI/WSGI stacks read X_Real_IP as X-Real-IP)")
	fs.BoolVar(&f.http3, "http3", false, "serve HTTP/3 on the UDP twin of --https-addr")
	fs.StringVar(&f.ingressClass, "ingress-class", "meshgate", "name of our IngressClass (controller meshgate.io/ingress-controller)")
	fs.StringVar(&f.l4ConfigMap, "l4-configmap", "", "namespace/name of the ConfigMap listing TCP/UDP services (tcp.<port>, udp.<port>)")
	fs.StringVar(&f.l4BindIP, "l4-bind-ip", "", "IP the TCP/UDP service ports bind to (empty: the IP of --https-addr)")
	fs.IntVar(&f.redirectPort, "redirect-https-port", 0, "port put into HTTP→HTTPS redirects (default: the port of --https-addr; 443 omits it). Set it behind a balancer that maps 443 to another port")
	fs.DurationVar(&f.headerTimeout, "read-header-timeout", 10*time.Second, "bound on the PROXY header, the TLS handshake and the request headers of a connection (slowloris)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 120*time.Second, "close keep-alive connections idle this long")
	fs.IntVar(&f.maxConns, "max-conns", 10000, "open client connections of the HTTPS and HTTP listeners together (WebSockets and passthrough included); more are closed at accept")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "how long SIGTERM waits for in-flight requests to drain")
	fs.StringVar(&f.sessionMode, "session-mode", "Stateful", "resumption mode for hosts no TLSPolicy selects: Stateful, TicketKeys or Off")
	fs.StringVar(&f.defaultCert, "default-certificate", "", "namespace/name of a kubernetes.io/tls Secret for unknown SNI names (default: the first valid TLS Ingress's)")
	fs.Int64Var(&f.sessionBudget, "session-store-bytes", 256<<20, "memory budget of the session store; the soonest-expiring sessions are evicted beyond it")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, error (debug logs every request)")
	fs.IntVar(&f.gwHTTPPort, "gateway-http-port", 0, "Gateway API listener port of merged Gateways (no --gateway-address-pool) served by the plain HTTP listener: the port clients reach it on (default: the port of --http-addr; the chart sets its Service's). Gateways with addresses of their own serve HTTP listeners on any port")
	fs.IntVar(&f.gwHTTPSPort, "gateway-https-port", 0, "Gateway API listener port of merged Gateways' HTTPS and TLS listeners, served by the TLS listener (default: the port of --https-addr). Gateways with addresses of their own serve them on any port")
	fs.StringVar(&f.gwPoolSpec, "gateway-address-pool", "", "addresses to give Gateways one each, so every Gateway is served on an address of its own (its own certificates, routes and ports): comma-separated IPs, CIDRs (10.0.80.0/28) and ranges (10.0.80.10-10.0.80.20). Each replica binds, on every assigned address, the ports of that Gateway's listeners (HTTP, HTTPS, TLS, TCP, UDP: any port), so the addresses must be routable to every replica (a load balancer's, or local ones). Empty: every Gateway is served on the replica's own addresses (merged Gateways)")
	fs.StringVar(&f.adminToken, "admin-token-file", "", "file holding the bearer token of the admin listener's write endpoints (POST /sessionmesh/revoke, /api/kv); read on every request, so a rotated Secret takes effect at once (empty: those endpoints are not served)")
	fs.Func("kv-zone", "a key-value zone replicated over the mesh and served on /api/kv of the admin listener (with --admin-token-file): name[:ttl[:max-bytes]], e.g. sessions:10m:64Mi; ttl (default 24h) is an entry's default and longest lifetime, max-bytes (default 16Mi) bounds the zone's memory. Repeat for more zones; give every replica the same list", func(v string) error {
		z, err := parseKVZone(v)
		if err != nil {
			return err
		}
		for _, o := range f.kvZones {
			if o.Name == z.Name {
				return fmt.Errorf("zone %q given twice", z.Name)
			}
		}
		f.kvZones = append(f.kvZones, z)
		return nil
	})
	fs.BoolVar(&f.followLoad, "gomaxprocs-follow-load", true, "keep GOMAXPROCS at what the replica's CPU use needs, from 1 up to Go's default (ignored when GOMAXPROCS is set; see docs/install.md)")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "address serving net/http/pprof under /debug/pprof/ for profiling (empty disables; never expose it publicly)")
}

// validate checks flag values no package checks at parse time.
func (f *commonFlags) validate() error {
	if f.proxyProtocol && strings.TrimSpace(f.trusted) == "" {
		return errors.New("--proxy-protocol needs --trusted-proxies (the load balancer's CIDRs); nothing is trusted by default")
	}
	switch routing.SessionMode(f.sessionMode) {
	case routing.SessionStateful, routing.SessionTicketKeys, routing.SessionOff:
	default:
		return fmt.Errorf("--session-mode: %q is not Stateful, TicketKeys or Off", f.sessionMode)
	}
	pool, err := translate.ParseAddressPool(f.gwPoolSpec)
	if err != nil {
		return fmt.Errorf("--gateway-address-pool: %w", err)
	}
	f.gwPool = pool
	return nil
}

// buildOptions are the table builder's options, the same in both modes.
func (f *commonFlags) buildOptions() translate.Options {
	o := translate.Options{
		IngressClass:       f.ingressClass,
		DefaultCertificate: f.defaultCert,
		DefaultSessionMode: routing.SessionMode(f.sessionMode),
		L4ConfigMap:        f.l4ConfigMap,
		GatewayHTTPPort:    f.gwHTTPPort,
		GatewayHTTPSPort:   f.gwHTTPSPort,
		GatewayAddressPool: f.gwPool,
	}
	if o.GatewayHTTPPort == 0 {
		o.GatewayHTTPPort = addrPort(f.httpAddr)
	}
	if o.GatewayHTTPSPort == 0 {
		o.GatewayHTTPSPort = addrPort(f.httpsAddr)
	}
	return o
}

// addrPort is the port of a listen address, 0 when it has none.
func addrPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// trustedPrefixes parses --trusted-proxies.
func (f *commonFlags) trustedPrefixes() ([]netip.Prefix, error) {
	return parsePrefixes("--trusted-proxies", f.trusted)
}

// forwarderPrefixes parses --trusted-forwarders.
func (f *commonFlags) forwarderPrefixes() ([]netip.Prefix, error) {
	return parsePrefixes("--trusted-forwarders", f.forwarders)
}

// parsePrefixes parses a comma-separated CIDR list of flag name.
func parsePrefixes(name, list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseKVZone parses a --kv-zone value, name[:ttl[:max-bytes]].
func parseKVZone(v string) (replica.KVZone, error) {
	parts := strings.Split(v, ":")
	z := replica.KVZone{Name: parts[0]}
	if z.Name == "" || len(z.Name) > clusterstate.MaxZoneLen || strings.ContainsAny(z.Name, "/ ") {
		return z, fmt.Errorf("zone name %q: 1..%d bytes, no '/' or space", z.Name, clusterstate.MaxZoneLen)
	}
	if len(parts) > 3 {
		return z, fmt.Errorf("%q: want name[:ttl[:max-bytes]]", v)
	}
	if len(parts) > 1 && parts[1] != "" {
		d, err := time.ParseDuration(parts[1])
		if err != nil || d <= 0 {
			return z, fmt.Errorf("zone %s: ttl %q is not a positive duration", z.Name, parts[1])
		}
		z.TTL = d
	}
	if len(parts) > 2 && parts[2] != "" {
		q, err := resource.ParseQuantity(parts[2])
		if err != nil || q.Value() <= 0 {
			return z, fmt.Errorf("zone %s: max-bytes %q is not a positive size (64Mi, 1000000)", z.Name, parts[2])
		}
		z.MaxBytes = q.Value()
	}
	return z, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// newLogger returns a JSON logr.Logger at the given level. Debug enables
// V(1) (access logs).
func newLogger(level string) (logr.Logger, error) {
	var lvl zapcore.Level
	switch level {
	case "debug":
		lvl = zapcore.Level(-1)
	case "info", "":
		lvl = zapcore.InfoLevel
	case "error":
		lvl = zapcore.ErrorLevel
	default:
		return logr.Discard(), fmt.Errorf("--log-level: unknown level %q", level)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	z, err := cfg.Build()
	if err != nil {
		return logr.Discard(), fmt.Errorf("building logger: %w", err)
	}
	return zapr.NewLogger(z), nil
}
