package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// meshCAPoll is how often MeshCA looks for the Secret while waiting for
// the leader to create it.
const meshCAPoll = 500 * time.Millisecond

// ErrNoMeshCA is returned by MeshCA when Options.MeshCASecret is empty.
var ErrNoMeshCA = errors.New("kube: no mesh CA secret configured")

// caEnsurer creates the mesh CA Secret when it is absent. It runs on the
// leader only, once.
type caEnsurer struct {
	c   client.Reader // uncached
	w   client.Writer
	nn  types.NamespacedName
	log logr.Logger
}

// NeedLeaderElection: only the leader creates the CA, so two replicas
// starting together do not race (Create's AlreadyExists settles any race
// left, e.g. with leader election off).
func (e *caEnsurer) NeedLeaderElection() bool { return true }

// Start ensures the Secret exists, retrying transient errors until ctx is
// done; then returns.
func (e *caEnsurer) Start(ctx context.Context) error {
	for {
		err := ensureMeshCA(ctx, e.c, e.w, e.nn)
		if err == nil {
			return nil
		}
		e.log.Error(err, "ensuring mesh CA secret; will retry", "secret", e.nn.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

func ensureMeshCA(ctx context.Context, r client.Reader, w client.Writer, nn types.NamespacedName) error {
	var s corev1.Secret
	err := r.Get(ctx, nn, &s)
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get mesh CA secret: %w", err)
	}
	ca, err := pki.NewCA("meshgate session mesh CA " + nn.Namespace + "/" + nn.Name)
	if err != nil {
		return err
	}
	crt, key := ca.PEM()
	s = corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: nn.Namespace, Name: nn.Name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "meshgate"}},
		Type: MeshCASecretType,
		Data: map[string][]byte{pki.CertFile: crt, pki.KeyFile: key},
	}
	if err := w.Create(ctx, &s); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create mesh CA secret: %w", err)
	}
	return nil
}

// MeshCA returns the signing mesh CA from Options.MeshCASecret, waiting
// as MeshIdentity does. It is the CA at the time of the call only; a
// replica uses MeshIdentity, which follows rotations.
func (c *Controller) MeshCA(ctx context.Context) (*pki.CA, error) {
	m, err := c.waitMeshCA(ctx)
	if err != nil {
		return nil, err
	}
	b, err := m.Parse()
	if err != nil {
		return nil, fmt.Errorf("kube: mesh CA secret %s: %w", c.opts.MeshCASecret, err)
	}
	return b.Signing(), nil
}

// MeshIdentity returns the mesh CA material from Options.MeshCASecret,
// waiting (polling the API server directly, no cache) until the leader has
// created it or ctx is done. It may be called before Start; once Start
// runs, the Secret is re-read every Options.MeshCAReload and the returned
// Identity updated with what changed (a CA rotation step, see
// RotateMeshCA). A Secret that does not parse is an error at the first
// read, and is logged and ignored later (the material in force stays).
// Every call returns the same Identity.
func (c *Controller) MeshIdentity(ctx context.Context) (*pki.Identity, error) {
	if id := c.meshID.Load(); id != nil {
		return id, nil
	}
	m, err := c.waitMeshCA(ctx)
	if err != nil {
		return nil, err
	}
	b, err := m.Parse()
	if err != nil {
		return nil, fmt.Errorf("kube: mesh CA secret %s: %w", c.opts.MeshCASecret, err)
	}
	c.meshID.CompareAndSwap(nil, pki.NewIdentity(b))
	return c.meshID.Load(), nil
}

// waitMeshCA reads the mesh CA Secret, waiting until it exists.
func (c *Controller) waitMeshCA(ctx context.Context) (pki.Material, error) {
	if c.opts.MeshCASecret == "" {
		return nil, ErrNoMeshCA
	}
	nn := mustNN(c.opts.MeshCASecret)
	t := time.NewTicker(meshCAPoll)
	defer t.Stop()
	for {
		var s corev1.Secret
		err := c.mgr.GetAPIReader().Get(ctx, nn, &s)
		switch {
		case err == nil:
			return pki.Material(s.Data), nil
		case !apierrors.IsNotFound(err):
			c.opts.Logger.Error(err, "reading mesh CA secret; will retry", "secret", nn.String())
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kube: waiting for mesh CA secret %s: %w", nn, ctx.Err())
		case <-t.C:
		}
	}
}

// meshCAWatcher re-reads the mesh CA Secret on every replica (not only the
// leader) and updates the Identity MeshIdentity handed out.
type meshCAWatcher struct{ c *Controller }

func (w *meshCAWatcher) NeedLeaderElection() bool { return false }

func (w *meshCAWatcher) Start(ctx context.Context) error {
	c := w.c
	every := c.opts.MeshCAReload
	if every <= 0 {
		every = 10 * time.Second
	}
	nn := mustNN(c.opts.MeshCASecret)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		id := c.meshID.Load()
		if id == nil {
			continue
		}
		var s corev1.Secret
		if err := c.mgr.GetAPIReader().Get(ctx, nn, &s); err != nil {
			if ctx.Err() == nil {
				c.opts.Logger.Error(err, "re-reading mesh CA secret; keeping the material in force", "secret", nn.String())
			}
			continue
		}
		b, err := pki.Material(s.Data).Parse()
		if err == nil {
			var changed bool
			if changed, err = id.Update(b); changed {
				c.opts.Logger.Info("mesh CA material updated", "secret", nn.String(),
					"phase", b.Phase(), "generation", b.Generation(), "signing", b.Signing().Fingerprint())
			}
		}
		if err != nil {
			c.opts.Logger.Error(err, "mesh CA secret refused; keeping the material in force", "secret", nn.String())
		}
	}
}

// MeshCAPhaseAnnotation records on the mesh CA Secret the phase the last
// RotateMeshCA step entered.
const MeshCAPhaseAnnotation = "meshgate.io/mesh-ca-phase"

// RotateMeshCA advances the rotation of the mesh CA in Secret nn by one
// step (pki.Rotate) and returns the phase it entered. The update carries
// the Secret's resourceVersion, so two concurrent steps cannot both apply.
// Before the next step every replica must show the new generation in
// /status/sessionmesh (docs/security.md).
func RotateMeshCA(ctx context.Context, c client.Client, nn types.NamespacedName) (pki.Phase, error) {
	var s corev1.Secret
	if err := c.Get(ctx, nn, &s); err != nil {
		return "", fmt.Errorf("kube: get mesh CA secret %s: %w", nn, err)
	}
	next, phase, err := pki.Rotate(pki.Material(s.Data))
	if err != nil {
		return "", fmt.Errorf("kube: mesh CA secret %s: %w", nn, err)
	}
	s.Data = next
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[MeshCAPhaseAnnotation] = string(phase)
	if err := c.Update(ctx, &s); err != nil {
		return "", fmt.Errorf("kube: update mesh CA secret %s: %w", nn, err)
	}
	return phase, nil
}

// MeshCAGeneration returns the generation (pki.Bundle.Generation) of the
// material in Secret nn: what every replica's /status/sessionmesh shows
// once it has loaded it.
func MeshCAGeneration(ctx context.Context, c client.Reader, nn types.NamespacedName) (string, error) {
	var s corev1.Secret
	if err := c.Get(ctx, nn, &s); err != nil {
		return "", fmt.Errorf("kube: get mesh CA secret %s: %w", nn, err)
	}
	b, err := pki.Material(s.Data).Parse()
	if err != nil {
		return "", fmt.Errorf("kube: mesh CA secret %s: %w", nn, err)
	}
	return b.Generation(), nil
}
