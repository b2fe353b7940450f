package main

import (
	"fmt"
	"strconv"
	"strings"
)

// server is one server block of a Corefile: the zones it is authoritative
// for, its port, and whether it answers with the whoami plugin.
type server struct {
	zones  []string // lower case, fully qualified ("foo.bar.com.", ".")
	port   int
	whoami bool
}

// parseCorefile reads the server blocks of a Corefile: "key [key...] {
// plugin args... }", with keys "zone[:port]" (an optional dns:// scheme).
// Plugin blocks nested inside a server block are skipped over; only the
// presence of the whoami plugin is recorded. Comments start with #.
func parseCorefile(text string) ([]server, error) {
	var out []server
	var keys []string
	depth := 0
	var cur *server
	for n, raw := range strings.Split(text, "\n") {
		line := raw
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, tok := range tokens(line) {
			switch {
			case tok == "{":
				depth++
				if depth == 1 {
					if len(keys) == 0 {
						return nil, fmt.Errorf("line %d: server block without a key", n+1)
					}
					s, err := newServer(keys)
					if err != nil {
						return nil, fmt.Errorf("line %d: %w", n+1, err)
					}
					out = append(out, s)
					cur = &out[len(out)-1]
					keys = nil
				}
			case tok == "}":
				if depth == 0 {
					return nil, fmt.Errorf("line %d: unbalanced }", n+1)
				}
				depth--
				if depth == 0 {
					cur = nil
				}
			case depth == 0:
				keys = append(keys, tok)
			case depth == 1 && tok == "whoami" && cur != nil:
				cur.whoami = true
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unterminated server block")
	}
	if len(keys) > 0 {
		return nil, fmt.Errorf("server key %q without a block", keys[0])
	}
	return out, nil
}

// tokens splits a line on spaces, with braces as tokens of their own.
func tokens(line string) []string {
	line = strings.ReplaceAll(line, "{", " { ")
	line = strings.ReplaceAll(line, "}", " } ")
	return strings.Fields(line)
}

func newServer(keys []string) (server, error) {
	s := server{port: 53}
	for i, k := range keys {
		k = strings.TrimPrefix(strings.ToLower(k), "dns://")
		zone, port, hasPort := strings.Cut(k, ":")
		if hasPort {
			p, err := strconv.Atoi(port)
			if err != nil || p <= 0 || p > 65535 {
				return s, fmt.Errorf("bad port in %q", keys[i])
			}
			if i > 0 && p != s.port {
				return s, fmt.Errorf("keys of one block on different ports")
			}
			s.port = p
		}
		if zone == "" {
			return s, fmt.Errorf("empty zone in %q", keys[i])
		}
		if !strings.HasSuffix(zone, ".") {
			zone += "."
		}
		s.zones = append(s.zones, zone)
	}
	return s, nil
}

// inZone reports whether name (fully qualified, lower case) is zone or
// below it.
func inZone(name, zone string) bool {
	return zone == "." || name == zone || strings.HasSuffix(name, "."+zone)
}
