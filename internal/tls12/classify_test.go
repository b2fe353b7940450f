package tls12

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestClassifyRealHellos checks the routing predicates on ClientHellos
// captured from real clients (the committed fuzz seeds): only the
// ticketless TLS 1.2 ones qualify; TLS 1.3 offers never do.
func TestClassifyRealHellos(t *testing.T) {
	want := map[string]bool{"openssl": true, "gnutls": true, "gotls12": true, "openssl13": false, "gotls13": false}
	for name, ticketless := range want {
		raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzParseClientHello", name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		msg, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseClientHello([]byte(msg))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h.Ticketless12() != ticketless || h.OffersTLS13() == ticketless {
			t.Errorf("%s: Ticketless12 %v OffersTLS13 %v", name, h.Ticketless12(), h.OffersTLS13())
		}
		if ticketless && !h.HasEMS() {
			t.Errorf("%s: no EMS", name)
		}
		if ticketless && !(&Config{Certificate: sharedCert(t, "rsa"), NextProtos: []string{"h2", "http/1.1"}}).CanServe(h) {
			t.Errorf("%s: cannot be served with an RSA key", name)
		}
	}
}
