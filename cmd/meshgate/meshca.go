package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
)

// meshCAMain implements `meshgate mesh-ca --out DIR`: it writes a new mesh
// cluster CA (ca.crt, ca.key with mode 0600) and refuses to overwrite one.
func meshCAMain(args []string, stdout, stderr io.Writer) error {
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
