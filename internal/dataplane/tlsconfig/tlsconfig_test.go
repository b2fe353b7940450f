package tlsconfig

import (
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/testkit"
)

// certificate returns a self-signed certificate for name, without Leaf (as
// a hand-built table might hold it).
func certificate(t testing.TB, name string) *tls.Certificate {
	t.Helper()
	c := *testkit.SelfSigned(t, name)
	c.Leaf = nil
	return &c
}

// recorder is a Sessions that records the hosts it configured.
type recorder struct {
	mu    sync.Mutex
	hosts []sessionmesh.Host
}

func (r *recorder) ConfigureTLS(cfg *tls.Config, h sessionmesh.Host) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts = append(r.hosts, h)
	cfg.SessionTicketsDisabled = h.Mode == sessionmesh.Off
}

func TestBuild(t *testing.T) {
	a, w := certificate(t, "a.example.com"), certificate(t, "x.w.example.com")
	pa := routing.DefaultPolicy()
	pa.Name, pa.Generation, pa.SessionMode, pa.SessionLifetime = "ns/p", 3, routing.SessionTicketKeys, time.Minute
	pa.MaxVersion = tls.VersionTLS12
	off := routing.DefaultPolicy()
	off.SessionMode = routing.SessionOff
	ha := &routing.TLSHost{Name: "a.example.com", Certificate: a, Policy: pa}
	hw := &routing.TLSHost{Name: "*.w.example.com", Certificate: w, Policy: off}
	t1 := &routing.Table{TLS: routing.TLSHosts{
		Exact:     map[string]*routing.TLSHost{"a.example.com": ha, "alias.example.com": ha, "nocert.example.com": {Name: "nocert.example.com"}},
		Wildcards: map[string]*routing.TLSHost{"w.example.com": hw},
	}}
	rec := &recorder{}
	set := Build(t1, rec)
	if len(rec.hosts) != 2 || set.Len() != 2 {
		t.Fatalf("configured %d hosts into %d configs, want 2 (a host under two names once, no certificate none)", len(rec.hosts), set.Len())
	}
	cfg, err := set.Config("A.Example.com")
	if err != nil {
		t.Fatal(err)
	}
	if alias, _ := set.Config("alias.example.com"); alias != cfg {
		t.Error("one host under two names got two configs")
	}
	if cfg.Certificates[0].Leaf == nil || cfg.Certificates[0].Leaf.Subject.CommonName != "a.example.com" {
		t.Error("leaf not parsed at build")
	}
	if a.Leaf != nil {
		t.Error("the table's certificate was modified")
	}
	if cfg.MaxVersion != tls.VersionTLS12 || cfg.MinVersion != tls.VersionTLS12 || len(cfg.CurvePreferences) == 0 || cfg.NextProtos[0] != "h2" {
		t.Errorf("policy not applied: %+v", cfg)
	}
	for _, h := range rec.hosts {
		switch string(h.Leaf) {
		case string(a.Certificate[0]):
			if h.Mode != sessionmesh.TicketKeys || h.Policy != "ns/p" || h.PolicyDigest != pa.TLSDigest() || h.Lifetime != time.Minute {
				t.Errorf("host a translated to %+v", h)
			}
		case string(w.Certificate[0]):
			if h.Mode != sessionmesh.Off {
				t.Errorf("host w translated to %+v", h)
			}
		default:
			t.Errorf("unexpected host %+v", h)
		}
	}
	if c, _ := set.Config("q.w.example.com"); c == nil || !c.SessionTicketsDisabled {
		t.Error("wildcard host config missing or not Off")
	}
	for _, name := range []string{"nocert.example.com", "unknown.example.com"} {
		if _, err := set.Config(name); !errors.Is(err, ErrNoCertificate) {
			t.Errorf("%s: %v, want ErrNoCertificate", name, err)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = set.Config("a.example.com") }); allocs != 0 {
		t.Errorf("Config allocates %v times per handshake, want 0", allocs)
	}
}

func TestHolder(t *testing.T) {
	var h Holder
	hello := &tls.ClientHelloInfo{ServerName: "a.example.com"}
	if _, err := h.GetConfigForClient(hello); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("no set: %v", err)
	}
	c := certificate(t, "a.example.com")
	tb := &routing.Table{TLS: routing.TLSHosts{Default: &routing.TLSHost{Certificate: c}}}
	h.Store(Build(tb, &recorder{}))
	got, err := h.GetConfigForClient(hello)
	if err != nil || got == nil || h.Load().Table() != tb {
		t.Fatalf("config %v, %v", got, err)
	}
	d := h.Load().Derive(func(_ *routing.TLSHost, c *tls.Config) { c.NextProtos = []string{"h3"} })
	dc, _ := d.Config("a.example.com")
	if dc == got || dc.NextProtos[0] != "h3" || got.NextProtos[0] != "h2" || d.Table() != tb {
		t.Fatal("Derive changed the source config or did not clone")
	}
	if empty := Build(nil, &recorder{}); empty.Len() != 0 {
		t.Fatal("nil table built configs")
	}
}

// scoper is a Sessions that scopes handshakes: it hands out a clone
// carrying the hello's server name in ServerName.
type scoper struct{ recorder }

func (*scoper) ScopeHandshake(cfg *tls.Config, hello *tls.ClientHelloInfo) *tls.Config {
	c := cfg.Clone()
	c.ServerName = "scoped:" + hello.ServerName
	return c
}

// Every handshake of a Set goes through the session layer's scope, on the
// TCP listener's configurations and on derived ones (HTTP/3).
func TestHandshakesScoped(t *testing.T) {
	c := certificate(t, "a.example.com")
	tb := &routing.Table{TLS: routing.TLSHosts{Default: &routing.TLSHost{Certificate: c}}}
	var h Holder
	h.Store(Build(tb, &scoper{}))
	hello := &tls.ClientHelloInfo{ServerName: "a.example.com"}
	got, err := h.GetConfigForClient(hello)
	if err != nil || got.ServerName != "scoped:a.example.com" {
		t.Fatalf("TCP handshake not scoped: %v, %v", got, err)
	}
	d := h.Load().Derive(func(_ *routing.TLSHost, c *tls.Config) { c.NextProtos = []string{"h3"} })
	dc, err := d.ConfigFor(hello)
	if err != nil || dc.ServerName != "scoped:a.example.com" || dc.NextProtos[0] != "h3" {
		t.Fatalf("derived handshake not scoped: %v, %v", dc, err)
	}
	if plain, _ := Build(tb, &recorder{}).ConfigFor(hello); plain.ServerName != "" {
		t.Fatal("a Sessions without ScopeHandshake changed the configuration")
	}
}
