// Command dnswhoami stands in for the CoreDNS image in the test cluster
// (test/nodeagent): the Gateway API conformance suite deploys CoreDNS as
// the UDPRoute backend with a Corefile whose foo.bar.com zone uses the
// whoami plugin. dnswhoami reads the same Corefile (-conf) and answers
// queries in every whoami zone as that plugin does: an empty answer and,
// in the additional section, the client's address (A or AAAA) and an SRV
// record naming its port and transport. It never forwards: a query
// outside a whoami zone (the suite's "forward . 8.8.8.8" block) is
// answered REFUSED, so nothing leaves the machine.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"
)

func main() {
	conf := flag.String("conf", "/etc/coredns/Corefile", "Corefile")
	flag.Parse()
	b, err := os.ReadFile(*conf)
	if err != nil {
		log.Fatal(err)
	}
	servers, err := parseCorefile(string(b))
	if err != nil {
		log.Fatalf("%s: %v", *conf, err)
	}
	ports := map[int][]server{}
	for _, s := range servers {
		ports[s.port] = append(ports[s.port], s)
	}
	var wg sync.WaitGroup
	for port, ss := range ports {
		addr := ":" + strconv.Itoa(port)
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			log.Fatal(err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("dnswhoami: serving %d server block(s) on %s (udp, tcp)\n", len(ss), addr)
		wg.Go(func() { serveUDP(pc, ss) })
		wg.Go(func() { serveTCP(ln, ss) })
	}
	wg.Wait()
}

func serveUDP(pc net.PacketConn, ss []server) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		ua := from.(*net.UDPAddr)
		resp, err := answer(buf[:n], ss, ua.IP, ua.Port, "udp")
		if err != nil {
			continue // not a DNS query: dropped, as servers do
		}
		_, _ = pc.WriteTo(resp, from)
	}
}

func serveTCP(ln net.Listener, ss []server) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			var l [2]byte
			for {
				if _, err := readFull(c, l[:]); err != nil {
					return
				}
				msg := make([]byte, int(l[0])<<8|int(l[1]))
				if _, err := readFull(c, msg); err != nil {
					return
				}
				ta := c.RemoteAddr().(*net.TCPAddr)
				resp, err := answer(msg, ss, ta.IP, ta.Port, "tcp")
				if err != nil {
					return
				}
				if _, err := c.Write(append([]byte{byte(len(resp) >> 8), byte(len(resp))}, resp...)); err != nil {
					return
				}
			}
		}()
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// answer builds the response to query msg from client ip:port.
func answer(msg []byte, ss []server, ip net.IP, port int, transport string) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil, fmt.Errorf("not a query")
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired}
	name := strings.ToLower(q.Name.String())
	whoami := false
	for _, s := range ss {
		for _, z := range s.zones {
			if inZone(name, z) && s.whoami {
				whoami = true
			}
		}
	}
	if !whoami {
		rh.RCode = dnsmessage.RCodeRefused
	} else {
		rh.Authoritative = true
	}
	bld := dnsmessage.NewBuilder(nil, rh)
	bld.EnableCompression()
	if err := bld.StartQuestions(); err != nil {
		return nil, err
	}
	if err := bld.Question(q); err != nil {
		return nil, err
	}
	if !whoami {
		return bld.Finish()
	}
	if err := bld.StartAdditionals(); err != nil {
		return nil, err
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET}
	if ip4 := ip.To4(); ip4 != nil {
		err = bld.AResource(rr, dnsmessage.AResource{A: [4]byte(ip4)})
	} else {
		err = bld.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: [16]byte(ip.To16())})
	}
	if err != nil {
		return nil, err
	}
	srvName, err := dnsmessage.NewName("_" + transport + "." + q.Name.String())
	if err != nil {
		return nil, err
	}
	if err := bld.SRVResource(dnsmessage.ResourceHeader{Name: srvName, Class: dnsmessage.ClassINET},
		dnsmessage.SRVResource{Port: uint16(port), Target: q.Name}); err != nil {
		return nil, err
	}
	return bld.Finish()
}
