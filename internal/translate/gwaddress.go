package translate

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// maxPoolAddresses bounds Options.GatewayAddressPool (ParseAddressPool
// refuses larger pools): a Gateway's address is found by probing the pool,
// and every replica binds the addresses it hands out.
const maxPoolAddresses = 4096

// ParseAddressPool parses a Gateway address pool: comma-separated IP
// addresses, CIDR prefixes ("127.0.81.0/24": every address of the prefix)
// and inclusive ranges ("10.0.0.10-10.0.0.20"). It returns the addresses
// sorted without duplicates, or an error naming the bad element; an empty
// string is an empty pool (merged Gateways).
func ParseAddressPool(spec string) ([]netip.Addr, error) {
	var out []netip.Addr
	add := func(from, to netip.Addr) error {
		for a := from; a.IsValid() && a.Compare(to) <= 0; a = a.Next() {
			if len(out) >= maxPoolAddresses {
				return fmt.Errorf("address pool %q: more than %d addresses", spec, maxPoolAddresses)
			}
			out = append(out, a)
		}
		return nil
	}
	for _, el := range strings.Split(spec, ",") {
		el = strings.TrimSpace(el)
		var err error
		switch {
		case el == "":
			continue
		case strings.Contains(el, "/"):
			var p netip.Prefix
			if p, err = netip.ParsePrefix(el); err == nil {
				p = p.Masked()
				err = add(p.Addr(), lastOf(p))
			}
		case strings.Contains(el, "-"):
			lo, hi, _ := strings.Cut(el, "-")
			var from, to netip.Addr
			if from, err = netip.ParseAddr(strings.TrimSpace(lo)); err == nil {
				if to, err = netip.ParseAddr(strings.TrimSpace(hi)); err == nil {
					if from.Is4() != to.Is4() || from.Compare(to) > 0 {
						err = fmt.Errorf("%s is not a range", el)
					} else {
						err = add(from, to)
					}
				}
			}
		default:
			var a netip.Addr
			if a, err = netip.ParseAddr(el); err == nil {
				err = add(a, a)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("address pool element %q: %w", el, err)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// lastOf returns the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// assignAddresses decides which frontend serves each of our Gateways.
//
// Without a pool (merged mode) every Gateway is served on meshgate's own
// addresses, and spec.addresses may only name those (checkAddresses).
//
// With Options.GatewayAddressPool, each Gateway gets one address of the
// pool, its own: the data plane binds the Gateway's listeners there and
// routes what arrives there by that Gateway alone. The assignment is a
// pure function of the Gateways, so every replica computes the same one:
//
//  1. oldest Gateway first, an address requested in spec.addresses (it
//     must be in the pool and not taken by an older Gateway: otherwise
//     AddressNotUsable), else the pool address its status already
//     publishes, if no older Gateway took it (addresses stay put while
//     the Gateway lives, whatever other Gateways come and go);
//  2. then, oldest first, the Gateways still without one probe the pool
//     from a start derived from their UID (a re-created Gateway of the
//     same name rarely gets the address of the one it replaces, whose
//     clients may still hold connections), taking the first free
//     address; an exhausted pool is AddressNotAssigned.
func (s *state) assignAddresses() {
	pool := s.opts.GatewayAddressPool
	inPool := make(map[netip.Addr]bool, len(pool))
	for _, a := range pool {
		inPool[a] = true
	}
	taken := map[netip.Addr]*gatewayBuild{}
	var rest []*gatewayBuild
	for _, gb := range s.gw.gateways {
		gb.fe = newFrontend(netip.Addr{}) // unserved until an address is given
		if len(pool) == 0 {
			if gb.invalidAddress = s.checkAddresses(gb.gw); gb.invalidAddress == "" {
				gb.fe = s.main
			}
			continue
		}
		req, bad := requestedAddress(gb.gw)
		switch {
		case bad != "":
			gb.invalidAddress = bad
		case req.IsValid() && !inPool[req]:
			gb.addrReason, gb.addrMsg = gatewayv1.GatewayReasonAddressNotUsable,
				fmt.Sprintf("address %s is not in meshgate's Gateway address pool (--gateway-address-pool)", req)
		case req.IsValid() && taken[req] != nil:
			gb.addrReason, gb.addrMsg = gatewayv1.GatewayReasonAddressNotUsable,
				fmt.Sprintf("address %s is in use by Gateway %s", req, nsName(taken[req].gw))
		case req.IsValid():
			s.own(gb, req, taken)
		default:
			if a := publishedPoolAddress(gb.gw, inPool); a.IsValid() && taken[a] == nil {
				s.own(gb, a, taken)
			} else {
				rest = append(rest, gb)
			}
		}
	}
	for _, gb := range rest {
		h := fnv.New32a()
		id := string(gb.gw.UID)
		if id == "" { // standalone manifests carry no UID
			id = nsName(gb.gw)
		}
		h.Write([]byte(id))
		start := int(h.Sum32() % uint32(len(pool)))
		for i := range pool {
			if a := pool[(start+i)%len(pool)]; taken[a] == nil {
				s.own(gb, a, taken)
				break
			}
		}
		if gb.fe.addr == (netip.Addr{}) {
			gb.addrReason, gb.addrMsg = gatewayv1.GatewayReasonAddressNotAssigned,
				fmt.Sprintf("every address of meshgate's Gateway address pool (%d) is in use; widen --gateway-address-pool or delete a Gateway", len(pool))
		}
	}
}

// own gives address a to gb.
func (s *state) own(gb *gatewayBuild, a netip.Addr, taken map[netip.Addr]*gatewayBuild) {
	taken[a] = gb
	gb.fe, gb.own = newFrontend(a), true
}

// requestedAddress returns the IP address spec.addresses asks for (the
// zero Addr when it asks for none, or for any: an entry without value),
// or why the request cannot be honoured at all (Accepted False,
// UnsupportedAddress): another address type, a malformed IP, more than one
// address.
func requestedAddress(gw *gatewayv1.Gateway) (netip.Addr, string) {
	var req netip.Addr
	for _, a := range gw.Spec.Addresses {
		t := gatewayv1.IPAddressType
		if a.Type != nil {
			t = *a.Type
		}
		if t != gatewayv1.IPAddressType {
			return netip.Addr{}, fmt.Sprintf("address type %q is not supported with per-Gateway addresses (IPAddress is)", t)
		}
		if a.Value == "" {
			continue
		}
		ip, err := netip.ParseAddr(a.Value)
		if err != nil {
			return netip.Addr{}, fmt.Sprintf("address %q is not an IP address", a.Value)
		}
		if req.IsValid() && req != ip {
			return netip.Addr{}, "meshgate assigns one address per Gateway; spec.addresses names more"
		}
		req = ip
	}
	return req, ""
}

// publishedPoolAddress returns the first pool address in gw's status.
func publishedPoolAddress(gw *gatewayv1.Gateway, inPool map[netip.Addr]bool) netip.Addr {
	for _, a := range gw.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Value); err == nil && inPool[ip] {
			return ip
		}
	}
	return netip.Addr{}
}

// checkAddresses returns why spec.addresses cannot be honoured in merged
// mode (only meshgate's published addresses can be), or "".
func (s *state) checkAddresses(gw *gatewayv1.Gateway) string {
	for _, a := range gw.Spec.Addresses {
		t := gatewayv1.IPAddressType
		if a.Type != nil {
			t = *a.Type
		}
		if t != gatewayv1.IPAddressType && t != gatewayv1.HostnameAddressType {
			return fmt.Sprintf("address type %q is not supported", t)
		}
		if a.Value != "" && !slices.Contains(s.opts.GatewayAddresses, a.Value) {
			return fmt.Sprintf("address %q is not one of meshgate's published addresses %v", a.Value, s.opts.GatewayAddresses)
		}
	}
	return ""
}

// statusAddresses are the addresses published in gb's status: its own, or
// meshgate's when it is merged.
func (s *state) statusAddresses(gb *gatewayBuild) []gatewayv1.GatewayStatusAddress {
	if len(s.opts.GatewayAddressPool) == 0 {
		return s.publishedAddresses()
	}
	out := []gatewayv1.GatewayStatusAddress{}
	if a := gb.fe.addr; a.IsValid() && gb.served() {
		t := gatewayv1.IPAddressType
		out = append(out, gatewayv1.GatewayStatusAddress{Type: &t, Value: a.String()})
	}
	return out
}
