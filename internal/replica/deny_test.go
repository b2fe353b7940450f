package replica

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/clusterstate/deny"
	"github.com/meshgate/meshgate/internal/testkit"
)

// TestDenyListRefusesAcrossReplicas: a deny entry PUT on replica 1 makes
// replica 2 close new connections from the address at accept and answer
// 403 on a keep-alive connection opened before the PUT; its DELETE lets
// the client in again. Every refusal is counted by stage.
func TestDenyListRefusesAcrossReplicas(t *testing.T) {
	cert := selfSigned(t, "app.example.com")
	be := backend(t, "ok")
	tc := startCluster(t, 2, nil)
	tc.holders[1].Store(table(2, cert, be))
	r2 := tc.reps[1]
	testkit.WaitFor(t, 5*time.Second, "r2 serves the table", func() bool {
		t := r2.Applied().Load()
		return t != nil && t.Generation == 2
	})
	addr := r2.HTTPAddr().String()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	get := func() int {
		t.Helper()
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("before the deny entry: %d", code)
	}

	if code, body := tc.adminDo(t, 0, http.MethodPut, "/api/kv/deny/127.0.0.0/8", "test", true); code != http.StatusOK {
		t.Fatalf("PUT deny on r1: %d %s", code, body)
	}
	testkit.WaitFor(t, 5*time.Second, "r2's deny list holds the prefix", func() bool { return r2.deny.Set().Len() == 1 })
	if code := get(); code != http.StatusForbidden {
		t.Fatalf("a request on a connection opened before the PUT: %d, want 403", code)
	}
	// A new connection is closed before a byte is read: the client sees
	// EOF or a reset, never a response.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
	if b, err := io.ReadAll(c2); len(b) != 0 || (err != nil && isTimeout(err)) {
		t.Fatalf("a new connection from a denied address read %q, %v", b, err)
	}
	c2.Close()
	if n := r2.deny.Refused(deny.StageConnection); n != 1 {
		t.Errorf("connections refused %d, want 1", n)
	}
	if n := r2.deny.Refused(deny.StageRequest); n != 1 {
		t.Errorf("requests refused %d, want 1", n)
	}

	if code, body := tc.adminDo(t, 1, http.MethodDelete, "/api/kv/deny/127.0.0.0/8", "", true); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	testkit.WaitFor(t, 5*time.Second, "r2's deny list is empty", func() bool { return r2.deny.Set().Len() == 0 })
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(&http.Request{Method: "GET", Host: "app.example.com",
		URL: mustURL(t, "http://"+addr+"/")})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after the DELETE: %d", resp.StatusCode)
	}
	if code, body := tc.adminDo(t, 0, http.MethodPut, "/api/kv/deny/not-an-address", "", true); code != http.StatusBadRequest {
		t.Fatalf("a key that is no address: %d %s", code, body)
	}
}

// TestJoinerIsReadyWithTheDenyList: a replica that joins after an entry
// was written is not ready before the entry is in its compiled list (it
// arrives in the snapshot; readiness waits for the snapshot and for the
// compile after it), so a load balancer never sends it a denied client
// before it refuses them.
func TestJoinerIsReadyWithTheDenyList(t *testing.T) {
	tc := startCluster(t, 2, nil)
	if code, body := tc.adminDo(t, 0, http.MethodPut, "/api/kv/deny/198.51.100.0/24", "test", true); code != http.StatusOK {
		t.Fatalf("PUT deny on r1: %d %s", code, body)
	}
	testkit.WaitFor(t, 5*time.Second, "r2 has the entry", func() bool { return tc.reps[1].deny.Set().Len() == 1 })
	j := tc.join(t, nil)
	testkit.WaitFor(t, 10*time.Second, "the joiner ready", func() bool { return j.adm.Ready(context.Background()) == nil })
	// No wait here: readiness is the promise.
	if !j.deny.Set().Contains(netip.MustParseAddr("198.51.100.9")) {
		t.Fatalf("the joiner is ready without the entry written before it joined (list of %d)", j.deny.Set().Len())
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
