package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/test/harness"
)

// chromiumFlags are the headless flags known to work on this machine
// (no sandbox as root, no background network traffic), plus
// --disable-http2 so a page's subresources spread over several TLS
// connections (HTTP/1.1 opens up to six per host) instead of one.
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
	"--no-first-run", "--disable-background-networking", "--disable-component-update",
	"--disable-sync", "--disable-http2", "--ignore-certificate-errors", "--remote-debugging-port=0"}

// requireChromium returns chromium's path, installing Debian's package
// when missing (harness.RequireTools); it fails the test when that is
// impossible.
func requireChromium(t *testing.T) string {
	t.Helper()
	if err := harness.RequireTools("chromium"); err != nil {
		t.Fatal(err)
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// browser is one headless Chromium process and a DevTools connection to
// it. Methods are safe for concurrent use.
type browser struct {
	ws     *websocket.Conn
	mu     sync.Mutex
	nextID int64
	calls  map[int64]chan cdpMsg
	events chan cdpMsg // bounded; events beyond it are dropped
}

type cdpMsg struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startBrowser runs chromium with a fresh profile, mapping host to ip, and
// connects to its DevTools endpoint. t's cleanups stop both.
func startBrowser(t *testing.T, bin, host, ip string) *browser {
	t.Helper()
	profile := t.TempDir()
	args := append(append([]string(nil), chromiumFlags...),
		"--user-data-dir="+profile, "--host-resolver-rules=MAP "+host+" "+ip, "about:blank")
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(profile, "..", "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	// Chromium writes its port and browser target path here once listening.
	var wsURL string
	if err := testkit.Until(20*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); err == nil && len(lines) == 2 {
			wsURL = "ws://127.0.0.1:" + lines[0] + lines[1]
			return true
		}
		return false
	}); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("chromium did not open DevTools: %v; log:\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatalf("DevTools dial: %v", err)
	}
	ws.SetReadLimit(64 << 20)
	b := &browser{ws: ws, calls: map[int64]chan cdpMsg{}, events: make(chan cdpMsg, 4096)}
	readDone := make(chan struct{})
	go b.readLoop(readDone)
	t.Cleanup(func() { ws.CloseNow(); <-readDone })
	return b
}

// readLoop dispatches responses to callers and events to b.events until
// the connection closes.
func (b *browser) readLoop(done chan struct{}) {
	defer close(done)
	for {
		_, data, err := b.ws.Read(context.Background())
		if err != nil {
			return
		}
		var m cdpMsg
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.calls[m.ID]
			delete(b.calls, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		select {
		case b.events <- m:
		default:
		}
	}
}

// call sends one DevTools command (to sessionID's target, or the browser
// when empty) and returns its result.
func (b *browser) call(ctx context.Context, sessionID, method string, params any) (json.RawMessage, error) {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMsg, 1)
	b.calls[id] = ch
	b.mu.Unlock()
	p, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	msg, _ := json.Marshal(cdpMsg{ID: id, Method: method, Params: p, SessionID: sessionID})
	if err := b.ws.Write(ctx, websocket.MessageText, msg); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		return m.Result, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// waitEvent waits for method on sessionID, discarding other events.
func (b *browser) waitEvent(ctx context.Context, sessionID, method string) error {
	for {
		select {
		case m := <-b.events:
			if m.Method == method && m.SessionID == sessionID {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", method, ctx.Err())
		}
	}
}

// newPage opens a tab, attaches to it and enables the Page and Network
// domains with the HTTP cache disabled (every visit fetches everything).
func (b *browser) newPage(ctx context.Context) (string, error) {
	res, err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"})
	if err != nil {
		return "", err
	}
	var tgt struct {
		TargetID string `json:"targetId"`
	}
	json.Unmarshal(res, &tgt)
	res, err = b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": tgt.TargetID, "flatten": true})
	if err != nil {
		return "", err
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	json.Unmarshal(res, &att)
	if att.SessionID == "" {
		return "", errors.New("attachToTarget: no session id")
	}
	for _, m := range []struct {
		method string
		params any
	}{{"Page.enable", nil}, {"Network.enable", nil}, {"Network.setCacheDisabled", map[string]any{"cacheDisabled": true}}} {
		if _, err := b.call(ctx, att.SessionID, m.method, m.params); err != nil {
			return "", err
		}
	}
	return att.SessionID, nil
}

// visit navigates the page to url and waits for its load event (every
// subresource fetched).
func (b *browser) visit(ctx context.Context, sessionID, url string) error {
	// Drop stale events so the load event waited for is this visit's.
	for len(b.events) > 0 {
		<-b.events
	}
	res, err := b.call(ctx, sessionID, "Page.navigate", map[string]any{"url": url})
	if err != nil {
		return err
	}
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	json.Unmarshal(res, &nav)
	if nav.ErrorText != "" {
		return fmt.Errorf("navigate %s: %s", url, nav.ErrorText)
	}
	return b.waitEvent(ctx, sessionID, "Page.loadEventFired")
}

// eval returns a JavaScript expression's value as JSON text.
func (b *browser) eval(ctx context.Context, sessionID, expr string) (string, error) {
	res, err := b.call(ctx, sessionID, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		return "", err
	}
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
	}
	json.Unmarshal(res, &r)
	return string(r.Result.Value), nil
}
