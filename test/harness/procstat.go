package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Activity is what the kernel counted for a process group: read- and
// write-like system calls (/proc/<pid>/io syscr, syscw: read, readv,
// write, writev and the like, so a socket's read and write calls, not
// epoll_wait nor futex) and context switches of all its threads
// (/proc/<pid>/task/<tid>/status, voluntary and not). Counters only grow
// while a process lives, so the difference of two readings is the
// activity in between (of the processes alive at both).
type Activity struct {
	ReadCalls, WriteCalls int64
	CtxSwitches           int64
}

// Sub returns a − b.
func (a Activity) Sub(b Activity) Activity {
	return Activity{a.ReadCalls - b.ReadCalls, a.WriteCalls - b.WriteCalls, a.CtxSwitches - b.CtxSwitches}
}

// Activity returns the counters of every live process in p's group.
func (p *Proc) Activity() (Activity, error) { return GroupActivity(p.PID()) }

// GroupActivity sums Activity over the live processes of process group
// pgid.
func GroupActivity(pgid int) (Activity, error) {
	procs, err := groupStats(pgid)
	if err != nil {
		return Activity{}, err
	}
	var a Activity
	for _, ps := range procs {
		pid := ps.pid
		io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
		if err != nil {
			continue // exited meanwhile
		}
		a.ReadCalls += procField(io, "syscr:")
		a.WriteCalls += procField(io, "syscw:")
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		for _, t := range tasks {
			st, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			a.CtxSwitches += procField(st, "voluntary_ctxt_switches:") + procField(st, "nonvoluntary_ctxt_switches:")
		}
	}
	return a, nil
}

// procField returns the integer after the line prefix name in a /proc
// "name: value" file, 0 when there is none.
func procField(b []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// groupStats reads /proc/<pid>/stat of every live process of process
// group pgid once, returning for each its pid and the fields after the
// parenthesised command name (state, ppid, pgrp, ... utime at index 11,
// stime at 12). No live process is an error.
func groupStats(pgid int) ([]procStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("process group %d: %w", pgid, err)
	}
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // exited meanwhile
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 12 && f[2] == strconv.Itoa(pgid) {
			out = append(out, procStat{pid: pid, fields: f})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("process group %d: no live process", pgid)
	}
	return out, nil
}

// procStat is one process's /proc/<pid>/stat, fields after the command.
type procStat struct {
	pid    int
	fields []string
}
