package resources

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestSysmonEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []string
		want    []string
		changed bool
	}{
		{"no GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=" + SysmonGODEBUG}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, []string{"GODEBUG=" + SysmonGODEBUG, "A=1"}, true},
		{"other settings kept", []string{"GODEBUG=http2client=0"}, []string{"GODEBUG=http2client=0," + SysmonGODEBUG}, true},
		{"schedtrace=0 is the operator's choice", []string{"GODEBUG=gctrace=1,schedtrace=0"}, []string{"GODEBUG=gctrace=1,schedtrace=0"}, false},
		{"already set", []string{"GODEBUG=" + SysmonGODEBUG}, []string{"GODEBUG=" + SysmonGODEBUG}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := sysmonEnv(tc.in)
			if changed != tc.changed || !slices.Equal(got, tc.want) {
				t.Errorf("sysmonEnv(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.changed)
			}
		})
	}
}

// TestKeepSysmonAwakeReexecs runs the test binary as a child that calls
// KeepSysmonAwake: the child must come back re-executed (same arguments)
// with the setting in force, which it reports through SysmonAwake.
func TestKeepSysmonAwakeReexecs(t *testing.T) {
	if os.Getenv("SYSMON_CHILD") == "1" {
		if err := KeepSysmonAwake(); err != nil {
			t.Fatal(err)
		}
		if !SysmonAwake() {
			t.Fatalf("after KeepSysmonAwake GODEBUG=%q", os.Getenv("GODEBUG"))
		}
		os.Stdout.WriteString("child GODEBUG=" + os.Getenv("GODEBUG") + "\n")
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, godebug := range []string{"", "gctrace=0"} {
		cmd := exec.Command(exe, "-test.run=^TestKeepSysmonAwakeReexecs$", "-test.v")
		cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") }),
			"SYSMON_CHILD=1", "GODEBUG="+godebug)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		want, _ := sysmonEnv([]string{"GODEBUG=" + godebug})
		if !strings.Contains(string(out), "child "+want[0]+"\n") {
			t.Errorf("child with GODEBUG=%q did not report %q:\n%s", godebug, want[0], out)
		}
	}
}

func TestSysmonAwakeOff(t *testing.T) {
	t.Setenv("GODEBUG", "schedtrace=0")
	if SysmonAwake() {
		t.Error("SysmonAwake with schedtrace=0")
	}
	t.Setenv("GODEBUG", "gctrace=0")
	if SysmonAwake() {
		t.Error("SysmonAwake without schedtrace")
	}
	t.Setenv("GODEBUG", SysmonGODEBUG)
	if !SysmonAwake() {
		t.Error("not SysmonAwake with " + SysmonGODEBUG)
	}
}
