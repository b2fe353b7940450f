package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"
)

// runWSClient dials a WebSocket, sends one text message and checks that the
// same message comes back.
func runWSClient(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ws-client", flag.ContinueOnError)
	rawURL := fs.String("url", "", "ws:// or wss:// URL (required)")
	caFile := fs.String("cacert", "", "PEM CA bundle for wss (default: system roots)")
	connect := fs.String("connect", "", "dial this host:port instead of the URL's (like curl --resolve)")
	msg := fs.String("message", "hello meshgate", "message to send")
	timeout := fs.Duration("timeout", 10*time.Second, "overall deadline")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rawURL == "" {
		return errors.New("ws-client: --url is required")
	}
	u, err := url.Parse(*rawURL)
	if err != nil {
		return fmt.Errorf("ws-client: %w", err)
	}
	tlsConf, err := clientTLS("ws-client", u.Hostname(), *caFile)
	if err != nil {
		return err
	}
	dialer := &net.Dialer{Timeout: *timeout}
	tr := &http.Transport{
		TLSClientConfig: tlsConf,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if *connect != "" {
				addr = *connect
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, *rawURL, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		return fmt.Errorf("ws-client: dial: %w", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(*msg)); err != nil {
		return fmt.Errorf("ws-client: write: %w", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		return fmt.Errorf("ws-client: read: %w", err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	fmt.Fprintf(out, "%s\n", got)
	if string(got) != *msg {
		return fmt.Errorf("ws-client: echo %q != sent %q", got, *msg)
	}
	return nil
}

// runUDPClient sends one datagram and checks that it comes back.
func runUDPClient(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("udp-client", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5353", "UDP host:port")
	msg := fs.String("message", "hello meshgate", "datagram payload")
	timeout := fs.Duration("timeout", 5*time.Second, "overall deadline")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "udp", *addr)
	if err != nil {
		return fmt.Errorf("udp-client: %w", err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	if _, err := c.Write([]byte(*msg)); err != nil {
		return fmt.Errorf("udp-client: write: %w", err)
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("udp-client: read: %w", err)
	}
	fmt.Fprintf(out, "%s\n", buf[:n])
	if string(buf[:n]) != *msg {
		return fmt.Errorf("udp-client: echo %q != sent %q", buf[:n], *msg)
	}
	return nil
}
