package main

import (
	"testing"
)

const h2loadSample = `starting benchmark...
finished in 2.00s, 9984.50 req/s, 5.12MB/s
requests: 19969 total, 20001 started, 19969 done, 19969 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 19969 2xx, 0 3xx, 0 4xx, 0 5xx
`

const sTimeReuseSample = `Collecting connection statistics for 1 seconds
*

1 connections in 0.00s; inf connections/user sec, bytes read 0
1 connections in 1 real seconds, 0 bytes read per connection


Now timing with session id reuse.
starting
rrrrrrrrrr

10 connections in 0.01s; 1000.00 connections/user sec, bytes read 0
10 connections in 2 real seconds, 0 bytes read per connection
`

func TestParseH2load(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		wantRPS float64
		wantOK  int
		wantErr bool
	}{
		{"summary", h2loadSample, 9984.5, 19969, false},
		{"no summary", "connect failed", 0, 0, true},
		{"no 2xx", "finished in 1s, 0.00 req/s, 0B/s\nrequests: 1 total, 1 started, 1 done, 0 succeeded, 1 failed, 1 errored, 0 timeout\nstatus codes: 0 2xx, 0 3xx, 1 4xx, 0 5xx\n", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseH2load([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && (r.ReqPerSec != tc.wantRPS || r.Succeeded != tc.wantOK) {
				t.Fatalf("got %+v", r)
			}
		})
	}
}

func TestParseSTime(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		in                   string
		reuse                bool
		wantConns, wantReuse int
		wantErr              bool
	}{
		{"reuse takes the last summary", sTimeReuseSample, true, 10, 10, false},
		{"new", "300 connections in 0.28s; 1071.43 connections/user sec, bytes read 0\n", false, 300, 0, false},
		{"refused", "connect error\n", false, 0, 0, true},
		{"zero", "0 connections in 0.00s; 0 connections/user sec\n", false, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseSTime([]byte(tc.in), tc.reuse)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && (r.Conns != tc.wantConns || r.Reused != tc.wantReuse) {
				t.Fatalf("got %+v", r)
			}
		})
	}
}

func FuzzParseH2load(f *testing.F) {
	f.Add([]byte(h2loadSample))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseH2load(b)
		if err == nil && r.Succeeded <= 0 {
			t.Fatalf("accepted output with %d 2xx responses", r.Succeeded)
		}
	})
}

func FuzzParseSTime(f *testing.F) {
	f.Add([]byte(sTimeReuseSample), true)
	f.Fuzz(func(t *testing.T, b []byte, reuse bool) {
		r, err := parseSTime(b, reuse)
		if err == nil && (r.Conns <= 0 || r.Reused > r.Conns || r.Reused < 0) {
			t.Fatalf("inconsistent result %+v", r)
		}
	})
}
