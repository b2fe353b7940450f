package translate

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/meshgate/meshgate/internal/routing"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// L4Entry is one parsed line of the L4 ConfigMap.
type L4Entry struct {
	Protocol routing.L4Protocol
	// Port is meshgate's listening port.
	Port int
	// Namespace, Service and ServicePort name the backend; ServicePort is a
	// port name or number of the Service.
	Namespace, Service string
	ServicePort        networkingv1.ServiceBackendPort
	// ProxyProtocol is 0, 1 or 2 (":PROXYv1", ":PROXY" / ":PROXYv2").
	ProxyProtocol int
}

// ParseL4Entry parses a key "tcp.<port>" or "udp.<port>" and a value
// "namespace/service:port[:PROXY|:PROXYv1|:PROXYv2]". UDP allows only
// PROXY v2 (v1 has no datagram form).
func ParseL4Entry(k, v string) (L4Entry, error) {
	var e L4Entry
	proto, port, ok := strings.Cut(k, ".")
	switch {
	case !ok:
		return e, errors.New(`key must be "tcp.<port>" or "udp.<port>"`)
	case proto == "tcp":
		e.Protocol = routing.L4TCP
	case proto == "udp":
		e.Protocol = routing.L4UDP
	default:
		return e, fmt.Errorf("unknown protocol %q in key (want tcp or udp)", proto)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return e, fmt.Errorf("invalid port %q in key", port)
	}
	e.Port = int(n)
	ref, rest, _ := strings.Cut(strings.TrimSpace(v), ":")
	ns, svc, ok := strings.Cut(ref, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1035Label(svc)) > 0 {
		return e, fmt.Errorf("value %q: want namespace/service:port[:PROXY]", v)
	}
	e.Namespace, e.Service = ns, svc
	sport, flag, _ := strings.Cut(rest, ":")
	if p, err := strconv.ParseUint(sport, 10, 16); err == nil && p > 0 {
		e.ServicePort.Number = int32(p)
	} else if len(validation.IsValidPortName(sport)) == 0 {
		e.ServicePort.Name = sport
	} else {
		return e, fmt.Errorf("value %q: invalid service port %q", v, sport)
	}
	switch flag {
	case "":
	case "PROXY", "PROXYv2":
		e.ProxyProtocol = 2
	case "PROXYv1":
		if e.Protocol == routing.L4UDP {
			return e, errors.New("PROXY protocol v1 cannot carry UDP; use PROXY (v2)")
		}
		e.ProxyProtocol = 1
	default:
		return e, fmt.Errorf("value %q: unknown option %q (want PROXY, PROXYv1 or PROXYv2)", v, flag)
	}
	return e, nil
}

// processL4 reads Options.L4ConfigMap into Table.L4.
func processL4(s *state) {
	if s.opts.L4ConfigMap == "" {
		return
	}
	ns, name, _ := strings.Cut(s.opts.L4ConfigMap, "/")
	cm, err := s.c.LookupConfigMap(ns, name)
	if err != nil {
		s.problems = append(s.problems, Problem{Kind: "ConfigMap", Namespace: ns, Name: name,
			Reason: ReasonConfigMapNotFound, Message: fmt.Sprintf("L4 services: %v; none served", err)})
		return
	}
	keys := make([]string, 0, len(cm.Data))
	for k := range cm.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	seen := map[L4Entry]string{} // protocol+port only
	for _, k := range keys {
		e, err := ParseL4Entry(k, cm.Data[k])
		if err != nil {
			s.problem("ConfigMap", cm, ReasonInvalidL4, "%s: %v; skipped", k, err)
			continue
		}
		pk := L4Entry{Protocol: e.Protocol, Port: e.Port}
		if prev, dup := seen[pk]; dup {
			s.problem("ConfigMap", cm, ReasonConflict, "%s: port already used by %s; skipped", k, prev)
			continue
		}
		seen[pk] = k
		b := s.serviceBackend("ConfigMap", cm, k, e.Namespace, e.Service, e.ServicePort, backendSettings{proxyProtocol: e.ProxyProtocol})
		s.l4 = append(s.l4, routing.L4Service{Protocol: e.Protocol, Port: e.Port, Backend: b, Source: nsName(cm)})
	}
	slices.SortFunc(s.l4, func(a, b routing.L4Service) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
}
