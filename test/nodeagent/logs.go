package nodeagent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Container logs are kept as the CRI logging format that kubelets read:
// one line per output line, "<RFC 3339 nano time> <stream> F <text>", so
// that sinceTime and timestamps work as on a real node. Output lines longer
// than maxLogLine are split into several records (tag P, then F), as
// container runtimes do.

const maxLogLine = 16 << 10

// logWriter turns a process's output into log records. Safe for concurrent
// use (stdout and stderr share it).
type logWriter struct {
	mu   sync.Mutex
	f    *os.File
	buf  []byte
	now  func() time.Time
	errs error
}

func newLogWriter(path string) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	return &logWriter{f: f, now: time.Now}, nil
}

// Write implements io.Writer; complete lines are written at once.
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := w.buf[:i]
		for len(line) > maxLogLine {
			w.record(line[:maxLogLine], "P")
			line = line[maxLogLine:]
		}
		w.record(line, "F")
		w.buf = w.buf[i+1:]
	}
	for len(w.buf) > maxLogLine {
		w.record(w.buf[:maxLogLine], "P")
		w.buf = w.buf[maxLogLine:]
	}
	return len(p), nil
}

func (w *logWriter) record(line []byte, tag string) {
	_, err := fmt.Fprintf(w.f, "%s stdout %s %s\n", w.now().UTC().Format(time.RFC3339Nano), tag, line)
	if err != nil && w.errs == nil {
		w.errs = err
	}
}

// Close flushes a last partial line and closes the file.
func (w *logWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.record(w.buf, "F")
		w.buf = nil
	}
	return errors.Join(w.errs, w.f.Close())
}

// logRecord is one parsed line of a container log.
type logRecord struct {
	time    time.Time
	partial bool
	text    string
}

// parseLogRecord parses "<time> <stream> <tag> <text>".
func parseLogRecord(line string) (logRecord, error) {
	ts, rest, ok := strings.Cut(line, " ")
	if !ok {
		return logRecord{}, errors.New("log record: no time")
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return logRecord{}, fmt.Errorf("log record: %w", err)
	}
	stream, rest, ok := strings.Cut(rest, " ")
	if !ok || (stream != "stdout" && stream != "stderr") {
		return logRecord{}, errors.New("log record: bad stream")
	}
	tag, text, ok := strings.Cut(rest, " ")
	if !ok || (tag != "F" && tag != "P") {
		return logRecord{}, errors.New("log record: bad tag")
	}
	return logRecord{time: t, partial: tag == "P", text: text}, nil
}

// logQuery is the part of PodLogOptions the agent honours.
type logQuery struct {
	since      time.Time // zero: all
	timestamps bool
	tailLines  int   // < 0: all
	limitBytes int64 // <= 0: no limit
}

// writeLogs copies the records of the log at path that match q to w as
// the kubelet does: the text of each line (prefixed with its time when
// q.timestamps), joined partial records, newline-terminated.
func writeLogs(w io.Writer, path string, q logQuery) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("container log: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 2*maxLogLine)
	var pending strings.Builder
	var pendingTime time.Time
	for sc.Scan() {
		r, err := parseLogRecord(sc.Text())
		if err != nil {
			continue // a torn last line of a killed writer
		}
		if pending.Len() == 0 {
			pendingTime = r.time
		}
		pending.WriteString(r.text)
		if r.partial {
			continue
		}
		if q.since.IsZero() || !pendingTime.Before(q.since) {
			line := pending.String()
			if q.timestamps {
				line = pendingTime.Format(time.RFC3339Nano) + " " + line
			}
			lines = append(lines, line)
		}
		pending.Reset()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("container log: %w", err)
	}
	if q.tailLines >= 0 && len(lines) > q.tailLines {
		lines = lines[len(lines)-q.tailLines:]
	}
	var written int64
	for _, l := range lines {
		b := []byte(l + "\n")
		if q.limitBytes > 0 && written+int64(len(b)) > q.limitBytes {
			b = b[:q.limitBytes-written]
		}
		n, err := w.Write(b)
		written += int64(n)
		if err != nil {
			return err
		}
		if q.limitBytes > 0 && written >= q.limitBytes {
			break
		}
	}
	return nil
}
