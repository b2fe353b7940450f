package nodeagent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// kubeletPKI is a CA of the agent's own and the kubelet serving
// certificate it signs for the node address.
type kubeletPKI struct {
	caFile string
	cert   tls.Certificate
}

func newKubeletPKI(dir string, ip netip.Addr) (*kubeletPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "meshgate test node agent CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("kubelet CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "meshgate-nodeagent"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{ip.AsSlice()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("kubelet certificate: %w", err)
	}
	caFile := filepath.Join(dir, "kubelet-ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return nil, err
	}
	return &kubeletPKI{caFile: caFile, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}, nil
}

// kubeletServer serves the part of the kubelet API the agent implements:
// GET /containerLogs/{namespace}/{pod}/{container} (sinceTime,
// sinceSeconds, timestamps, tailLines, limitBytes, previous) and /healthz.
// The API server is the only client; it is not authenticated (a test node).
type kubeletServer struct {
	srv  *http.Server
	port int
	done chan struct{}
}

func (k *kubeletServer) start(a *Agent, ip netip.Addr) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return fmt.Errorf("nodeagent: kubelet endpoint: %w", err)
	}
	k.port = ln.Addr().(*net.TCPAddr).Port
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", a.serveLogs)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "meshgate test node agent: "+r.URL.Path+" is not implemented (exec, attach, port-forward and stats are not emulated)", http.StatusNotImplemented)
	})
	k.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{a.pki.cert}, MinVersion: tls.VersionTLS12},
	}
	k.done = make(chan struct{})
	go func() {
		defer close(k.done)
		if err := k.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error(err, "kubelet endpoint")
		}
	}()
	return nil
}

func (k *kubeletServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = k.srv.Shutdown(ctx)
	<-k.done
}

// serveLogs answers the API server's pods/log proxying.
func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	q, err := parseLogQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := r.PathValue("namespace") + "/" + r.PathValue("pod")
	st := a.podFor(key)
	if st == nil {
		http.Error(w, "pod "+key+" is not running on this node", http.StatusNotFound)
		return
	}
	var c *containerState
	for _, cc := range st.containers {
		if cc.spec.Name == r.PathValue("container") {
			c = cc
		}
	}
	if c == nil {
		http.Error(w, "container "+r.PathValue("container")+" not found in pod "+key, http.StatusNotFound)
		return
	}
	c.mu.Lock()
	n := c.restarts
	c.mu.Unlock()
	if r.URL.Query().Get("previous") == "true" {
		if n == 0 {
			http.Error(w, "previous terminated container "+c.spec.Name+" not found", http.StatusBadRequest)
			return
		}
		n--
	}
	w.Header().Set("Content-Type", "text/plain")
	if err := writeLogs(w, c.logPath(st.logDir, n), q); err != nil {
		a.log.Error(err, "serve logs", "pod", key)
	}
}

func parseLogQuery(r *http.Request) (logQuery, error) {
	v := r.URL.Query()
	q := logQuery{tailLines: -1, timestamps: v.Get("timestamps") == "true"}
	if v.Get("follow") == "true" {
		return q, errors.New("follow is not supported by the test node agent")
	}
	if s := v.Get("sinceTime"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, fmt.Errorf("sinceTime: %w", err)
		}
		q.since = t
	}
	if s := v.Get("sinceSeconds"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return q, fmt.Errorf("sinceSeconds %q", s)
		}
		q.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if s := v.Get("limitBytes"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return q, fmt.Errorf("limitBytes %q", s)
		}
		q.limitBytes = n
	}
	if s := v.Get("tailLines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, fmt.Errorf("tailLines %q", s)
		}
		q.tailLines = n
	}
	return q, nil
}
