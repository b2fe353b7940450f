// Package standalone serves the routing table from Kubernetes manifests on
// disk, for meshgate's standalone mode (no cluster).
//
// A Source owns one goroutine (Run) that loads the manifests, builds the
// table with internal/translate and publishes it into a routing.Holder. It
// reloads when Reload is called (main calls it on SIGHUP) and when the
// manifest files change (their names, sizes and modification times are
// polled, every second by default). Bursts of changes are debounced. A
// manifest that fails to load keeps the last good table serving; the error
// is logged, counted, returned by LastError and passed to OnReload. Build
// problems (skipped Ingress rules, bad certificates …) do not block
// publishing: they are logged and counted.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/source/debounce"
	"github.com/meshgate/meshgate/internal/source/manifest"
	"github.com/meshgate/meshgate/internal/translate"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	DefaultPollInterval = time.Second
)

// Config configures a Source. Path and Holder are required; every other
// zero field takes the default named on it.
type Config struct {
	// Path is a manifest file or directory (see internal/source/manifest).
	Path string
	// Holder receives every successfully built table. The Source stores
	// into it from its Run goroutine only.
	Holder *routing.Holder
	// Build options; Generation and Now are set by the Source (generations
	// continue from the Holder's table, if any).
	Build translate.Options
	// Log receives load errors, build problems and skipped documents.
	// The zero value discards.
	Log logr.Logger
	// Registerer, if not nil, gets the Source's metrics (meshgate_standalone_*).
	Registerer prometheus.Registerer
	// PollInterval is how often the files are checked for changes
	// (default DefaultPollInterval); negative disables watching.
	PollInterval time.Duration
	// HoldOff is how long a change must be followed by quiet before the
	// reload; MaxDelay bounds how long a stream of changes can postpone it.
	// Zero means debounce.DefaultHoldOff and debounce.DefaultMaxDelay, the
	// defaults of both sources.
	HoldOff, MaxDelay time.Duration
	// OnReload, if not nil, is called after every reload attempt from the
	// Run goroutine; it must not block for long.
	OnReload func(Result)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Result describes one reload attempt.
type Result struct {
	// Err is the load error; nil when a table was published.
	Err error
	// Generation of the published table (0 when Err is set).
	Generation uint64
	// Problems found while building (the table was still published).
	Problems []translate.Problem
	// Skipped documents of kinds meshgate does not read.
	Skipped []manifest.Skipped
}

// Source loads manifests and publishes routing tables. Its methods are safe
// for concurrent use; Run must be called once.
type Source struct {
	cfg     Config
	loader  *manifest.Loader
	trigger chan struct{} // capacity 1: pending Reload requests coalesce
	synced  chan struct{}
	running atomic.Bool
	metrics *metrics // nil without a Registerer

	mu         sync.Mutex
	lastErr    error
	reloads    uint64 // successful
	failures   uint64
	generation uint64

	// Owned by the Run goroutine.
	lastProblems map[translate.Problem]bool
	lastSkipped  map[manifest.Skipped]bool
}

// New checks cfg and registers the metrics. It does not read the files;
// Run does.
func New(cfg Config) (*Source, error) {
	if cfg.Path == "" {
		return nil, errors.New("standalone: Config.Path is required")
	}
	if cfg.Holder == nil {
		return nil, errors.New("standalone: Config.Holder is required")
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	loader, err := manifest.NewLoader()
	if err != nil {
		return nil, fmt.Errorf("standalone: %w", err)
	}
	s := &Source{cfg: cfg, loader: loader, trigger: make(chan struct{}, 1), synced: make(chan struct{})}
	if cfg.Registerer != nil {
		if s.metrics, err = newMetrics(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("standalone: %w", err)
		}
	}
	return s, nil
}

// Reload asks Run to reload the manifests soon (after the hold-off). It
// never blocks; requests made while one is pending coalesce.
func (s *Source) Reload() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Synced is closed once Run's first load attempt has finished, successful
// or not (see LastError and the Holder).
func (s *Source) Synced() <-chan struct{} { return s.synced }

// LastError returns the error of the latest reload attempt, nil if it
// published a table (or none was attempted yet).
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Reloads returns how many reloads published a table and how many failed.
func (s *Source) Reloads() (published, failed uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloads, s.failures
}

// Run loads the manifests, publishes the table, then watches for changes
// and Reload requests until ctx is done. It returns nil when ctx ends; a
// failing first load does not stop it (the error is in LastError, and the
// Holder stays empty until a load succeeds). Run may be called only once.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("standalone: Run called twice")
	}
	fp := s.reload()
	close(s.synced)

	var poll <-chan time.Time
	if s.cfg.PollInterval > 0 {
		t := time.NewTicker(s.cfg.PollInterval)
		defer t.Stop()
		poll = t.C
	}
	deb := debounce.New(s.cfg.HoldOff, s.cfg.MaxDelay)
	defer deb.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.trigger:
			deb.Changed(time.Time{})
		case <-poll:
			if cur := fingerprint(s.cfg.Path); cur != fp {
				fp = cur
				deb.Changed(time.Time{})
			}
		case <-deb.C():
			deb.Fired()
			fp = s.reload()
		}
	}
}

// reload loads, builds and publishes once; it returns the fingerprint of
// the files taken before loading them, so changes made during the load
// trigger another reload.
func (s *Source) reload() (fp string) {
	fp = fingerprint(s.cfg.Path)
	res := s.loadAndBuild()
	s.record(res)
	if s.cfg.OnReload != nil {
		s.cfg.OnReload(res)
	}
	return fp
}

func (s *Source) loadAndBuild() (res Result) {
	defer func() {
		if p := recover(); p != nil { // a builder bug must not take the data plane down
			res = Result{Err: fmt.Errorf("standalone: building the table panicked: %v", p)}
		}
	}()
	objs, skipped, err := s.loader.Load(s.cfg.Path)
	if err != nil {
		return Result{Err: err}
	}
	c := translate.NewCache(s.cfg.Build.L4ConfigMap)
	for _, o := range objs {
		c.Insert(o)
	}
	opts := s.cfg.Build
	opts.Generation = s.nextGeneration()
	opts.Now = s.cfg.Now()
	tbl, problems := translate.ToTable(c, opts)
	s.cfg.Holder.Store(tbl)
	return Result{Generation: tbl.Generation, Problems: problems, Skipped: skipped}
}

func (s *Source) nextGeneration() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.cfg.Holder.Load(); t != nil && t.Generation > s.generation {
		s.generation = t.Generation
	}
	s.generation++
	return s.generation
}

// record updates counters, metrics and logs for one attempt.
func (s *Source) record(res Result) {
	log := s.cfg.Log
	s.mu.Lock()
	s.lastErr = res.Err
	if res.Err != nil {
		s.failures++
	} else {
		s.reloads++
	}
	s.mu.Unlock()
	s.metrics.observe(res, s.cfg.Now())
	if res.Err != nil {
		log.Error(res.Err, "manifests not loaded; still serving the last good table", "path", s.cfg.Path)
		return
	}
	problems := make(map[translate.Problem]bool, len(res.Problems))
	for _, p := range res.Problems {
		problems[p] = true
		if !s.lastProblems[p] {
			log.Info("problem in manifests; the part was skipped", "kind", p.Kind, "namespace", p.Namespace,
				"name", p.Name, "reason", p.Reason, "message", p.Message)
		}
	}
	skipped := make(map[manifest.Skipped]bool, len(res.Skipped))
	for _, sk := range res.Skipped {
		skipped[sk] = true
		if !s.lastSkipped[sk] {
			log.Info("manifest document of a kind meshgate does not read; skipped", "file", sk.File,
				"document", sk.Document, "apiVersion", sk.APIVersion, "kind", sk.Kind, "name", sk.Name)
		}
	}
	s.lastProblems, s.lastSkipped = problems, skipped
	log.Info("routing table published", "generation", res.Generation, "problems", len(res.Problems))
}
