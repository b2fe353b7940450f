package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// runH3Client GETs --url over HTTP/3 once per --connect address, each on a
// new QUIC connection sharing one TLS session cache, and prints
// "addr: status proto resumed=bool" per request. With --want-resume every
// connection after the first must resume the session (one replica's session
// resumed by the next).
func runH3Client(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("h3-client", flag.ContinueOnError)
	rawURL := fs.String("url", "", "https:// URL (required); its host is the SNI and :authority")
	caFile := fs.String("cacert", "", "PEM CA bundle (default: system roots)")
	connect := fs.String("connect", "", "comma-separated UDP host:port list to dial instead of the URL's host")
	wantResume := fs.Bool("want-resume", false, "fail unless every connection after the first resumed")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline per request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rawURL == "" {
		return errors.New("h3-client: --url is required")
	}
	req0, err := http.NewRequest(http.MethodGet, *rawURL, nil)
	if err != nil {
		return fmt.Errorf("h3-client: %w", err)
	}
	tlsConf, err := clientTLS("h3-client", req0.URL.Hostname(), *caFile)
	if err != nil {
		return err
	}
	tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	addrs := []string{req0.URL.Host}
	if *connect != "" {
		addrs = strings.Split(*connect, ",")
	}
	for i, addr := range addrs {
		resumed, status, err := h3Get(ctx, *rawURL, addr, tlsConf, *timeout)
		if err != nil {
			return fmt.Errorf("h3-client: %s: %w", addr, err)
		}
		fmt.Fprintf(out, "%s: %s HTTP/3 resumed=%v\n", addr, status, resumed)
		if !strings.HasPrefix(status, "200") {
			return fmt.Errorf("h3-client: %s answered %s", addr, status)
		}
		if *wantResume && i > 0 && !resumed {
			return fmt.Errorf("h3-client: %s did not resume the session", addr)
		}
	}
	return nil
}

// h3Get makes one request on a fresh QUIC connection to addr.
func h3Get(ctx context.Context, url, addr string, tlsConf *tls.Config, timeout time.Duration) (resumed bool, status string, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http3.Transport{
		TLSClientConfig: tlsConf,
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			c, err := quic.DialAddr(ctx, addr, tc, qc)
			if err == nil {
				resumed = c.ConnectionState().TLS.DidResume
			}
			return c, err
		},
	}
	defer tr.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, "", err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return false, "", err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	return resumed, resp.Status, err
}
