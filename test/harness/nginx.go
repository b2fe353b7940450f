package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NginxConfig is one nginx server terminating TLS for Host and proxying to
// the echo backend: the comparison for a meshgate replica.
type NginxConfig struct {
	Dir           string // prefix dir: config, pid, logs, temp paths
	Name          string
	Listen        string // ip:port
	PKI           *PKI
	Upstream      string // echo backend host:port
	ProxyProtocol bool   // expect PROXY headers (behind HAProxy send-proxy-v2)
	Workers       int    // worker_processes; 0 = auto
	// Tickets turns ssl_session_tickets on (each node its own random ticket
	// key, nginx's default). Off (the default here) leaves only the per-node
	// session-ID cache; Go's TLS 1.2 client resumes with tickets only, so
	// Go-client TLS 1.2 comparisons need Tickets.
	Tickets bool
	// Servers are more virtual hosts on the same listener, each with its
	// own certificate (e.g. an ECDSA one next to Host's RSA one), proxying
	// to the same upstream with the same session settings.
	Servers []NginxServer
	// NoHTTP2 leaves http2 off the listener, so browsers open several
	// HTTP/1.1 connections as they do to HTTP/1.1-only servers.
	NoHTTP2 bool
	// ConnLog, when set, is a file that gets one line per request:
	// "$connection $ssl_session_reused" (with Workers 1, $connection is
	// unique per connection). Empty: no access log.
	ConnLog string
	// LimitReq, when set, limits requests per client address (the PROXY
	// header's with ProxyProtocol) on every location of every server, as
	// ingress-nginx renders meshgate.io/limit-rps: limit_req_zone with
	// rate=RPS r/s, limit_req with burst=Burst nodelay, status 429.
	LimitReq *NginxLimitReq
}

// NginxLimitReq is nginx's limit_req of one zone keyed by client address.
type NginxLimitReq struct {
	RPS   int // requests per second (rate=RPSr/s)
	Burst int // burst=Burst nodelay; 0: no burst
}

// NginxServer is one more virtual host of an nginx server.
type NginxServer struct {
	Name      string // server_name (the SNI that selects it)
	Cert, Key string // PEM paths
}

// Nginx is a started nginx master (its workers share its process group).
type Nginx struct {
	Addr string
	Proc *Proc
}

// StartNginx runs nginx in the foreground with its own configuration,
// prefix dir and pid file. Each instance has its own per-node session cache
// (ssl_session_cache shared:SSL:1m, 5 minutes like meshgate's default) and
// session tickets off, so what resumes is exactly what that node's cache
// holds: nginx's documented way to run several nodes without sharing.
func StartNginx(t T, c NginxConfig) (*Nginx, error) {
	t.Helper()
	if err := RequireTools("nginx"); err != nil {
		return nil, err
	}
	prefix := filepath.Join(c.Dir, c.Name)
	for _, d := range []string{"logs", "tmp"} {
		if err := mkdir(filepath.Join(prefix, d)); err != nil {
			return nil, err
		}
	}
	workers := "auto"
	if c.Workers > 0 {
		workers = fmt.Sprint(c.Workers)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers must read the key and temp dirs
	}
	conf := fmt.Sprintf(`%[1]s
worker_processes %[2]s;
daemon off;
pid %[3]s/nginx.pid;
error_log %[3]s/logs/error.log warn;
events { worker_connections 8192; }
http {
    log_format conn '$connection $ssl_session_reused';
    access_log %[6]s;
    client_body_temp_path %[3]s/tmp/body;
    proxy_temp_path %[3]s/tmp/proxy;
    fastcgi_temp_path %[3]s/tmp/fastcgi;
    uwsgi_temp_path %[3]s/tmp/uwsgi;
    scgi_temp_path %[3]s/tmp/scgi;
    upstream echo {
        server %[4]s;
        keepalive 64;
    }
%[7]s%[5]s}
`, user, workers, prefix, c.Upstream, c.serverBlocks(), c.accessLog(), c.limitZone())
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("nginx config: %w", err)
	}
	p, err := Start(t, c.Dir, c.Name, "nginx", "-p", prefix, "-c", confPath, "-e", filepath.Join(prefix, "logs", "error.log"))
	if err != nil {
		return nil, err
	}
	if err := WaitTCP(c.Listen, 5*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(prefix, "logs", "error.log"))
		return nil, fmt.Errorf("nginx %s: %w; error.log:\n%s\n%s", c.Name, err, b, p.Tail(2000))
	}
	return &Nginx{Addr: c.Listen, Proc: p}, nil
}

// limitZone renders LimitReq's limit_req_zone and limit_req (at http
// level, so every location inherits them).
func (c NginxConfig) limitZone() string {
	l := c.LimitReq
	if l == nil {
		return ""
	}
	burst := ""
	if l.Burst > 0 {
		burst = fmt.Sprintf(" burst=%d nodelay", l.Burst)
	}
	key := "$binary_remote_addr"
	if c.ProxyProtocol {
		key = "$proxy_protocol_addr"
	}
	return fmt.Sprintf("    limit_req_zone %s zone=limit:10m rate=%dr/s;\n    limit_req zone=limit%s;\n    limit_req_status 429;\n", key, l.RPS, burst)
}

// accessLog renders access_log's arguments.
func (c NginxConfig) accessLog() string {
	if c.ConnLog == "" {
		return "off"
	}
	return c.ConnLog + " conn"
}

// serverBlocks renders the server{} block of Host and one per Servers.
func (c NginxConfig) serverBlocks() string {
	pp := ""
	if c.ProxyProtocol {
		pp = " proxy_protocol"
	}
	h2 := " http2"
	if c.NoHTTP2 {
		h2 = ""
	}
	var b strings.Builder
	for _, v := range append([]NginxServer{{Name: Host, Cert: c.PKI.ServerCert, Key: c.PKI.ServerKey}}, c.Servers...) {
		fmt.Fprintf(&b, nginxServerTemplate, c.Listen, pp, v.Name, v.Cert, v.Key, xffVar(c.ProxyProtocol), onOff(c.Tickets), h2)
	}
	return b.String()
}

// nginxServerTemplate: listen, PROXY option, server_name, certificate, key,
// X-Forwarded-For variable, session tickets on/off, " http2" or "".
const nginxServerTemplate = `    server {
        listen %[1]s ssl%[8]s%[2]s;
        server_name %[3]s;
        ssl_certificate %[4]s;
        ssl_certificate_key %[5]s;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;
        ssl_session_timeout 5m;
        ssl_session_tickets %[7]s;
        keepalive_requests 100000;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For %[6]s;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
`

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func xffVar(proxyProtocol bool) string {
	if proxyProtocol {
		return "$proxy_protocol_addr"
	}
	return "$remote_addr"
}

// StartNginxTrio starts n nginx servers on 127.0.0.(40+i), free ports,
// named prefix-1..n, expecting PROXY headers, tickets as given.
func StartNginxTrio(t T, dir, prefix string, n int, pki *PKI, upstream string, tickets bool) ([]*Nginx, error) {
	t.Helper()
	return StartNginxSet(t, NginxConfig{Dir: dir, Name: prefix, PKI: pki, Upstream: upstream, Tickets: tickets}, n)
}

// StartNginxSet starts n nginx servers configured like base, expecting
// PROXY headers, on 127.0.0.(40+i) with free ports, named base.Name-1..n.
func StartNginxSet(t T, base NginxConfig, n int) ([]*Nginx, error) {
	t.Helper()
	var out []*Nginx
	for i := 1; i <= n; i++ {
		addr, err := FreeAddr(fmt.Sprintf("127.0.0.%d", 40+i))
		if err != nil {
			return nil, err
		}
		c := base
		c.Name, c.Listen, c.ProxyProtocol = fmt.Sprintf("%s-%d", base.Name, i), addr, true
		ng, err := StartNginx(t, c)
		if err != nil {
			return nil, err
		}
		out = append(out, ng)
	}
	return out, nil
}

// NginxAddrs returns the listen addresses of ns.
func NginxAddrs(ns []*Nginx) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Addr)
	}
	return out
}
