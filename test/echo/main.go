// Command echo-backend is the backend meshgate's demo, end-to-end tests and
// benchmarks proxy to.
//
// Server mode (the default):
//
//	echo-backend --listen 127.0.0.1:9000 [--udp 127.0.0.1:9053] [--tcp 127.0.0.1:9054] [--name echo]
//
// answers every HTTP request (HTTP/1.1 and cleartext HTTP/2 with prior
// knowledge, "h2c"; an "Upgrade: h2c" request is answered in HTTP/1.1) with a
// JSON Reply: method, path, host,
// protocol, remote address, every request header, and the backend's own name
// and address. /healthz answers "ok"; /ws is a WebSocket echo. --udp and
// --tcp add datagram and stream echo servers (any of the three may be "" to
// disable it). SIGINT/SIGTERM stop it gracefully.
//
// Client modes, used by hack/demo.sh's smoke checks:
//
//	echo-backend ws-client --url wss://echo.meshgate.test:8443/ws --cacert ca.crt [--connect 127.0.0.1:8443] [--message hi]
//	echo-backend udp-client --addr 127.0.0.1:5353 [--message hi]
//	echo-backend h3-client --url https://echo.meshgate.test:8443/ --cacert ca.crt --connect 127.0.0.1:8443,127.0.0.1:8444 [--want-resume]
//
// ws-client and udp-client send one message, print the echo and exit 0 only
// if it matches. h3-client makes one HTTP/3 request per --connect address,
// each on a new QUIC connection sharing one TLS session cache, and reports
// whether each resumed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	args := os.Args[1:]
	switch {
	case len(args) > 0 && args[0] == "ws-client":
		err = runWSClient(ctx, args[1:], os.Stdout)
	case len(args) > 0 && args[0] == "h3-client":
		err = runH3Client(ctx, args[1:], os.Stdout)
	case len(args) > 0 && args[0] == "udp-client":
		err = runUDPClient(ctx, args[1:], os.Stdout)
	default:
		err = runServer(ctx, args, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-backend:", err)
		os.Exit(1)
	}
}

// serverConfig is the parsed server-mode command line.
type serverConfig struct {
	listen, udp, tcp, name string
}

func parseServerFlags(args []string) (serverConfig, error) {
	var c serverConfig
	fs := flag.NewFlagSet("echo-backend", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:9000", `HTTP/1.1 + h2c listen address ("" disables)`)
	fs.StringVar(&c.udp, "udp", "", `UDP echo listen address ("" disables)`)
	fs.StringVar(&c.tcp, "tcp", "", `TCP echo listen address ("" disables)`)
	fs.StringVar(&c.name, "name", "echo", "backend name reported in replies")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.listen == "" && c.udp == "" && c.tcp == "" {
		return c, errors.New("nothing to serve: --listen, --udp and --tcp are all empty")
	}
	return c, nil
}

func runServer(ctx context.Context, args []string, logw io.Writer) error {
	cfg, err := parseServerFlags(args)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	if cfg.listen != "" {
		ln, err := net.Listen("tcp", cfg.listen)
		if err != nil {
			return fmt.Errorf("listen http: %w", err)
		}
		srv := newHTTPServer(newHandler(BackendInfo{Name: cfg.name, Addr: ln.Addr().String()}))
		fmt.Fprintf(logw, "echo-backend %s: http on %s\n", cfg.name, ln.Addr())
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http serve: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			return nil
		})
	}
	if cfg.udp != "" {
		pc, err := net.ListenPacket("udp", cfg.udp)
		if err != nil {
			return fmt.Errorf("listen udp: %w", err)
		}
		fmt.Fprintf(logw, "echo-backend %s: udp echo on %s\n", cfg.name, pc.LocalAddr())
		g.Go(func() error { return serveUDP(ctx, pc) })
	}
	if cfg.tcp != "" {
		ln, err := net.Listen("tcp", cfg.tcp)
		if err != nil {
			return fmt.Errorf("listen tcp: %w", err)
		}
		fmt.Fprintf(logw, "echo-backend %s: tcp echo on %s\n", cfg.name, ln.Addr())
		g.Go(func() error { return serveTCP(ctx, ln) })
	}
	return g.Wait()
}

// newHTTPServer returns a server speaking HTTP/1.1 and h2c with bounded
// header reads and idle connections.
func newHTTPServer(h http.Handler) *http.Server {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}
