package kube

import (
	"context"
	"net"
	"slices"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// peerStream is a one-slot, latest-wins channel of peer sets. publish is
// called by the handler goroutine only.
type peerStream struct {
	ch   chan []string
	last []string
	sent bool
}

func newPeerStream() *peerStream { return &peerStream{ch: make(chan []string, 1)} }

// publish sends set unless it equals the last one sent, replacing a set the
// reader has not taken yet.
func (p *peerStream) publish(set []string) {
	if set == nil {
		set = []string{}
	}
	if p.sent && slices.Equal(p.last, set) {
		return
	}
	p.last, p.sent = set, true
	for {
		select {
		case p.ch <- set:
			return
		default:
		}
		select {
		case <-p.ch: // drop the stale set; the reader gets the newest
		default:
		}
	}
}

// peersFrom lists "ip:port" for every ready endpoint address of slices on
// the port named portName, sorted and without duplicates. Endpoints whose
// Ready condition is unset count as ready (the API's convention).
func peersFrom(slicesByName map[string]*discoveryv1.EndpointSlice, portName string) []string {
	out := []string{}
	for _, es := range slicesByName {
		port := -1
		for _, p := range es.Ports {
			if p.Name != nil && *p.Name == portName && p.Port != nil {
				port = int(*p.Port)
				break
			}
		}
		if port < 0 {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				out = append(out, net.JoinHostPort(a, strconv.Itoa(port)))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// PeerSource adapts a stream of full peer sets that is never closed (such
// as Controller.Peers) to the session mesh's PeerSource contract: each call
// to Peers forwards the sets until its ctx is done and then closes the
// channel it returned.
type PeerSource <-chan []string

// Peers implements sessionmesh.PeerSource.
func (c PeerSource) Peers(ctx context.Context) <-chan []string {
	out := make(chan []string, 1)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case set := <-c:
				select {
				case out <- set:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
