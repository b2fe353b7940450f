package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// clientTLS is the TLS configuration of the test clients: serverName as
// SNI and name to verify, and the roots from the PEM bundle caFile (the
// system roots when it is empty). cmd names the client in errors.
func clientTLS(cmd, serverName, caFile string) (*tls.Config, error) {
	conf := &tls.Config{ServerName: serverName}
	if caFile == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	conf.RootCAs = x509.NewCertPool()
	if !conf.RootCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificates in %s", cmd, caFile)
	}
	return conf, nil
}
