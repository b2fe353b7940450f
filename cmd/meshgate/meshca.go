package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/source/kube"
)

// meshCAMain implements `meshgate mesh-ca --out DIR`: it writes a new mesh
// cluster CA (ca.crt, ca.key with mode 0600) and refuses to overwrite one;
// and `meshgate mesh-ca rotate` (meshCARotate).
func meshCAMain(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "rotate" {
		return meshCARotate(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("mesh-ca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write ca.crt and ca.key into (created if absent)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("--out is required")
	}
	ca, err := pki.GenerateCA(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote mesh CA to %s (cluster id %s)\n", *out, ca.Fingerprint())
	return nil
}

// meshCARotate implements `meshgate mesh-ca rotate (--dir DIR | --secret
// NS/NAME)`: one step of the mesh CA rotation (pki.Rotate) on a --mesh-dir
// or on the mesh CA Secret. Run it three times; before each next step every
// replica must show the generation the last step printed (docs/security.md).
func meshCARotate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mesh-ca rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "mesh CA directory to rotate in place (standalone); copy it to every host and SIGHUP the replicas after each step")
	secret := fs.String("secret", "", "namespace/name of the mesh CA Secret to rotate (`meshgate run`); the replicas re-read it every --mesh-ca-reload")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file with --secret (default: in-cluster config, then $KUBECONFIG)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var (
		phase pki.Phase
		gen   string
	)
	switch {
	case (*dir == "") == (*secret == ""):
		return errors.New("exactly one of --dir and --secret is required")
	case *dir != "":
		m, err := pki.LoadMaterial(*dir)
		if err != nil {
			return err
		}
		next, p, err := pki.Rotate(m)
		if err != nil {
			return err
		}
		if err := pki.WriteMaterial(*dir, next); err != nil {
			return err
		}
		b, _ := next.Parse()
		phase, gen = p, b.Generation()
	default:
		ns, name, ok := strings.Cut(*secret, "/")
		if !ok || ns == "" || name == "" {
			return fmt.Errorf("--secret: %q is not namespace/name", *secret)
		}
		cfg, err := restConfig(*kubeconfig)
		if err != nil {
			return err
		}
		c, err := client.New(cfg, client.Options{})
		if err != nil {
			return fmt.Errorf("kube client: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		nn := types.NamespacedName{Namespace: ns, Name: name}
		if phase, err = kube.RotateMeshCA(ctx, c, nn); err != nil {
			return err
		}
		if gen, err = kube.MeshCAGeneration(ctx, c, nn); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "mesh CA rotation: entered phase %s, generation %s\n", phase, gen)
	switch phase {
	case pki.PhaseStable:
		fmt.Fprintln(stdout, "rotation complete once every replica shows this generation: the old CA is no longer trusted")
	default:
		fmt.Fprintln(stdout, "wait until every replica's /status/sessionmesh shows trust.generation", gen, "then run this again")
	}
	return nil
}
