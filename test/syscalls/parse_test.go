package syscalls

import "testing"

func TestParseSummary(t *testing.T) {
	got, err := parseSummary(`syscall              calls    errors
---------------- --------- ---------
read                   900       300
write                  600
futex                   42         3
---------------- --------- ---------
total                 1542       303
`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"read": 900, "read:errors": 300, "write": 600, "futex": 42, "futex:errors": 3}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
	if _, err := parseSummary("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n"); err == nil {
		t.Error("no table: want an error")
	}
}
