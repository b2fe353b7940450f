// Command meshgate is a Kubernetes ingress controller whose replicas share TLS
// sessions across the cluster.
//
// Subcommands:
//
//	meshgate standalone  serve Kubernetes manifests read from files (no cluster)
//	meshgate run         run as an ingress controller in a Kubernetes cluster
//	meshgate mesh-ca     generate the session mesh's cluster CA (mesh-ca rotate: rotate it)
//	meshgate version     print the version
//
// main only parses flags and wires packages together; the work is done in
// the packages under internal/ (docs/architecture.md draws them).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/meshgate/meshgate/internal/resources"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "standalone" || os.Args[1] == "run") {
		// First, before any goroutine or file exists: the data plane runs
		// with the runtime's system monitor kept out of deep sleep (see
		// internal/resources, sysmon.go). Returns only if nothing changed
		// or the re-exec failed.
		if err := resources.KeepSysmonAwake(); err != nil {
			fmt.Fprintf(os.Stderr, "meshgate: %v (going on with Go's default sysmon)\n", err)
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "standalone":
		err = standaloneMain(rest, stderr)
	case "run":
		err = kubeMain(rest, stderr)
	case "mesh-ca":
		err = meshCAMain(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "meshgate", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "meshgate: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshgate %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: meshgate <command> [flags]

commands:
  standalone   serve Ingress/Service/EndpointSlice/Secret manifests from files
  run          run as an ingress controller in a Kubernetes cluster
  mesh-ca      generate the session mesh cluster CA (ca.crt, ca.key);
               "mesh-ca rotate" advances its rotation by one step
  version      print the version

Run "meshgate <command> -h" for the flags of a command.
`)
}
