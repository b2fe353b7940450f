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

// MeshCA returns the mesh CA from Options.MeshCASecret, waiting (polling
// the API server directly, no cache) until the leader has created it or
// ctx is done. It may be called before Start. The Secret holds ca.crt and
// ca.key in PEM; a Secret that does not parse is an error, not a wait.
func (c *Controller) MeshCA(ctx context.Context) (*pki.CA, error) {
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
			ca, err := pki.ParseCA(s.Data[pki.CertFile], s.Data[pki.KeyFile])
			if err != nil {
				return nil, fmt.Errorf("kube: mesh CA secret %s: %w", nn, err)
			}
			return ca, nil
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
