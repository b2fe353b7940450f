package replica

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/testkit"
)

// The admin token of the test clusters.
const testToken = "s3cret"

// peerFeed is a PeerSource whose one value the test sends once every
// replica's mesh address is known.
type peerFeed chan []string

func (f peerFeed) Peers(ctx context.Context) <-chan []string {
	out := make(chan []string, 1)
	go func() {
		defer close(out)
		select {
		case addrs := <-f:
			out <- addrs
		case <-ctx.Done():
			return
		}
		<-ctx.Done()
	}()
	return out
}

// testCluster is n in-process replicas sharing a mesh on loopback, each
// with its admin listener, the admin token testToken and its own holder.
type testCluster struct {
	reps      []*Replica
	holders   []*routing.Holder
	ca        *pki.CA
	tokenFile string
}

// startCluster builds n replicas with cfg as a template (mut may adjust
// each), connects their meshes and runs them until the test ends. It
// returns once every replica is ready with every peer online.
func startCluster(t *testing.T, n int, mut func(i int, c *Config)) *testCluster {
	t.Helper()
	ca, err := pki.NewCA("replica-test")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{ca: ca, tokenFile: tokenFile}
	var feeds []peerFeed
	var addrs []string
	for i := range n {
		r, h, feed := tc.newReplica(t, i, mut)
		tc.reps = append(tc.reps, r)
		tc.holders = append(tc.holders, h)
		feeds = append(feeds, feed)
		addrs = append(addrs, r.Node().MeshAddr())
	}
	for i, r := range tc.reps {
		feeds[i] <- addrs
		runReplica(t, r)
	}
	for _, r := range tc.reps {
		testkit.WaitFor(t, 10*time.Second, r.cfg.NodeName+" ready with every peer online", func() bool {
			st := r.Node().Status()
			return r.adm.Ready(context.Background()) == nil && st.Mesh != nil && st.Mesh.PeersOnline == n-1
		})
	}
	return tc
}

// join starts one more replica whose peers are the cluster's, and returns
// it once it has started (not once it is ready).
func (tc *testCluster) join(t *testing.T, mut func(i int, c *Config)) *Replica {
	t.Helper()
	r, h, feed := tc.newReplica(t, len(tc.reps), mut)
	var addrs []string
	for _, p := range tc.reps {
		addrs = append(addrs, p.Node().MeshAddr())
	}
	tc.reps = append(tc.reps, r)
	tc.holders = append(tc.holders, h)
	feed <- append(addrs, r.Node().MeshAddr())
	runReplica(t, r)
	return r
}

// runReplica runs r until the test ends and returns once it has started.
func runReplica(t *testing.T, r *Replica) {
	t.Helper()
	testkit.Background(t, r.cfg.NodeName+": Run", 20*time.Second, r.Run)
	<-r.Started()
}

// newReplica builds replica i of the cluster (not yet running), with its
// own holder and peer feed.
func (tc *testCluster) newReplica(t *testing.T, i int, mut func(i int, c *Config)) (*Replica, *routing.Holder, peerFeed) {
	t.Helper()
	h := &routing.Holder{}
	h.Store(&routing.Table{Generation: 1}) // tests that route store their own later
	feed := make(peerFeed, 1)
	cfg := Config{Tables: h, NodeName: "r" + string(rune('1'+i)), CA: tc.ca, MeshAddr: "127.0.0.1:0", Peers: feed,
		HTTPSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		AdminTokenFile: tc.tokenFile, ShutdownGrace: 2 * time.Second,
		MeshTuning: func(c *mesh.Config) {
			c.InitialSync = 300 * time.Millisecond
			c.ReconnectMin = 10 * time.Millisecond
			c.ReconnectMax = 200 * time.Millisecond
			c.HeartbeatInterval = 100 * time.Millisecond
			c.DeadAfter = time.Second
		},
		Log: testr.NewWithOptions(t, testr.Options{Verbosity: 0}).WithName("r" + string(rune('1'+i)))}
	if mut != nil {
		mut(i, &cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, h, feed
}

// adminDo sends a request to replica i's admin listener, with the token
// unless auth is false, and returns the status and body.
func (tc *testCluster) adminDo(t *testing.T, i int, method, path, body string, auth bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, tc.reps[i].adm.URL(path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
