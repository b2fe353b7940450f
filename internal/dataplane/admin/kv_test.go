package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshgate/meshgate/internal/clusterstate"
)

func newKV(t *testing.T) (*KVHandler, *clusterstate.Store, *prometheus.Registry) {
	t.Helper()
	st, err := clusterstate.New(clusterstate.Config{Zones: []clusterstate.ZoneConfig{{Name: "z"}, {Name: "ips"}, {Name: "hidden"}}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	h, err := NewKVHandler(KVConfig{Store: st, Registerer: reg, Zones: []KVZone{
		{Name: "z", TTL: time.Hour},
		{Name: "ips", Key: func(k string) (string, error) {
			a, err := netip.ParseAddr(k)
			if err != nil {
				return "", errors.New("not an address")
			}
			return a.String(), nil
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return h, st, reg
}

type kvResp struct {
	code int
	body string
	hdr  http.Header
}

func kvDo(h http.Handler, method, path, body string) kvResp {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return kvResp{rec.Code, rec.Body.String(), rec.Header()}
}

// The API round-trips values, honours and bounds TTLs, canonicalises
// keys through the zone's hook, answers errors as JSON and counts every
// request.
func TestKVHandler(t *testing.T) {
	h, st, reg := newKV(t)
	if r := kvDo(h, "PUT", "/api/kv/z/a/b%2Fc", "v1"); r.code != 200 || !strings.Contains(r.body, `"key":"a/b/c"`) || r.hdr.Get(ExpiresHeader) == "" {
		t.Fatalf("PUT: %+v", r)
	}
	if r := kvDo(h, "GET", "/api/kv/z/a/b/c", ""); r.code != 200 || r.body != "v1" || r.hdr.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET: %+v", r)
	}
	e, _, _ := st.Get("z", "a/b/c")
	if left := time.Until(time.Unix(0, e.Expires)); left < 59*time.Minute || left > time.Hour {
		t.Fatalf("default TTL gave %v left, want the zone's hour", left)
	}
	if r := kvDo(h, "PUT", "/api/kv/z/short?ttl=90", "\xff\x00"); r.code != 200 {
		t.Fatalf("PUT ttl=90: %+v", r)
	}
	e, _, _ = st.Get("z", "short")
	if left := time.Until(time.Unix(0, e.Expires)); left > 90*time.Second || left < 80*time.Second {
		t.Fatalf("ttl=90 gave %v left", left)
	}
	var list struct {
		Zone    string        `json:"zone"`
		Entries []KVEntryInfo `json:"entries"`
	}
	r := kvDo(h, "GET", "/api/kv/z", "")
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Entries) != 2 ||
		list.Entries[0].Key != "a/b/c" || *list.Entries[0].Value != "v1" || list.Entries[1].ValueBase64 != "/wA=" {
		t.Fatalf("zone listing %+v (%v): %s", list, err, r.body)
	}
	if r := kvDo(h, "GET", "/api/kv", ""); r.code != 200 || !strings.Contains(r.body, `"name":"z"`) ||
		!strings.Contains(r.body, `"records":2`) || strings.Contains(r.body, "hidden") {
		t.Fatalf("zones: %+v", r)
	}
	if r := kvDo(h, "DELETE", "/api/kv/z/a/b/c", ""); r.code != 204 {
		t.Fatalf("DELETE: %+v", r)
	}
	if r := kvDo(h, "GET", "/api/kv/z/a/b/c", ""); r.code != 404 {
		t.Fatalf("GET after DELETE: %+v", r)
	}
	// The zone's hook: canonical keys, refused ones.
	if r := kvDo(h, "PUT", "/api/kv/ips/::ffff:192.0.2.1", ""); r.code != 200 || !strings.Contains(r.body, `"key":"::ffff:192.0.2.1"`) {
		t.Fatalf("PUT ips: %+v", r)
	}
	if r := kvDo(h, "PUT", "/api/kv/ips/2001:DB8::1", ""); r.code != 200 || !strings.Contains(r.body, `"key":"2001:db8::1"`) {
		t.Fatalf("PUT ips canonical: %+v", r)
	}

	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/api/kv/nope/k", "", 404},
		{"GET", "/api/kv/hidden/k", "", 404},
		{"GET", "/api/kv/z/absent", "", 404},
		{"GET", "/api/kvx", "", 404},
		{"POST", "/api/kv/z/k", "", 405},
		{"PUT", "/api/kv/z", "", 405},
		{"PUT", "/api/kv/z/k?ttl=2h", "", 400},
		{"PUT", "/api/kv/z/k?ttl=0", "", 400},
		{"PUT", "/api/kv/z/k?ttl=soon", "", 400},
		{"PUT", "/api/kv/z/k?ttl=99999999999999999", "", 400},
		{"PUT", "/api/kv/z/" + strings.Repeat("k", clusterstate.MaxKeyLen+1), "", 400},
		{"PUT", "/api/kv/z/big", strings.Repeat("v", clusterstate.MaxValueLen+1), 413},
		{"PUT", "/api/kv/ips/not-an-ip", "", 400},
	} {
		r := kvDo(h, tc.method, tc.path, tc.body)
		var eb ErrorBody
		if r.code != tc.code || json.Unmarshal([]byte(r.body), &eb) != nil || eb.Error == "" ||
			r.hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s %.60s: %d %q, want %d with a JSON error", tc.method, tc.path, r.code, r.body, tc.code)
		}
	}
	if r := kvDo(h, "PUT", "/api/kv/z/fits", strings.Repeat("v", clusterstate.MaxValueLen)); r.code != 200 {
		t.Fatalf("a value of the maximum size: %+v", r)
	}
	var m dto.Metric
	if err := h.requests.WithLabelValues("PUT", "400").Write(&m); err != nil || m.GetCounter().GetValue() != 6 {
		t.Errorf(`requests_total{PUT,400} = %v (%v), want 6`, m.GetCounter().GetValue(), err)
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 1 || mfs[0].GetName() != "meshgate_kv_api_requests_total" {
		t.Errorf("metric not registered: %v %v", mfs, err)
	}
	if _, err := NewKVHandler(KVConfig{Store: st, Zones: []KVZone{{Name: "absent"}}}); err == nil {
		t.Error("a zone the store lacks was accepted")
	}
}

// Behind RequireBearer, the API refuses requests without the token with a
// JSON 401 and serves those with it.
func TestKVHandlerBehindBearer(t *testing.T) {
	kv, _, _ := newKV(t)
	file := t.TempDir() + "/token"
	if err := os.WriteFile(file, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(RequireBearer(file, kv))
	defer srv.Close()
	req, _ := http.NewRequest("PUT", srv.URL+"/api/kv/z/k", strings.NewReader("v"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), `"error":"unauthorized"`) {
		t.Fatalf("without token: %d %s", resp.StatusCode, b)
	}
	req, _ = http.NewRequest("PUT", srv.URL+"/api/kv/z/k", strings.NewReader("v"))
	req.Header.Set("Authorization", "Bearer tok")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with token: %d", resp.StatusCode)
	}
}
