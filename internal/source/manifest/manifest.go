// Package manifest reads Kubernetes objects from YAML or JSON files for
// meshgate's standalone mode.
//
// Load accepts a file or a directory. A directory is read non-recursively:
// its regular files (or symlinks to files) ending in .yaml, .yml or .json,
// not starting with ".", in name order. Non-recursive on purpose: a
// ConfigMap mounted as a volume exposes its keys as top-level symlinks next
// to hidden "..data" directories, and nested directories (kustomize bases)
// are not meant to be applied as they are.
//
// Each file holds one or more documents separated by "---" lines; a
// "kind: List" document contributes its items. The kinds meshgate reads are
// decoded strictly (unknown fields and duplicate keys are errors, as with
// kubectl):
// networking.k8s.io/v1 Ingress and IngressClass, v1 Service, Secret,
// ConfigMap and Namespace (its labels select Gateway routes),
// discovery.k8s.io/v1 EndpointSlice, meshgate.io/v1alpha1 TLSPolicy and the
// Gateway API kinds of gateway.networking.k8s.io/v1 (GatewayClass, Gateway,
// ListenerSet, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute,
// ReferenceGrant, BackendTLSPolicy). Documents of any other kind
// (Deployment, CRDs …)
// are skipped and reported in the returned []Skipped, so a manifest written
// for a cluster loads as it is. A kind meshgate reads in an older API version
// (networking.k8s.io/v1beta1 Ingress) is an error. Namespaced objects
// without a namespace get "default". Two documents naming the same object
// are an error.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshgate/meshgate/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// Limits on what Load reads.
const (
	// MaxFileSize bounds one manifest file.
	MaxFileSize = 16 << 20
	// MaxDocuments bounds the documents (list items included) of one file.
	MaxDocuments = 100000
	// DefaultNamespace is given to namespaced objects that name none.
	DefaultNamespace = "default"
)

// Skipped is a document of a kind meshgate does not read.
type Skipped struct {
	// File and Document locate it. Documents are numbered from 1 in
	// file order, counting those with content (a "---" directly followed
	// by another "---" adds no number); list items share their List's.
	File     string
	Document int
	// APIVersion, Kind, Namespace and Name as written.
	APIVersion, Kind, Namespace, Name string
}

func (s Skipped) String() string {
	return fmt.Sprintf("%s: document %d: skipped %s %s %s", s.File, s.Document, s.APIVersion, s.Kind, objName(s.Namespace, s.Name))
}

// supported are the kinds Load returns; the value says whether the kind is
// namespaced.
var supported = map[schema.GroupVersionKind]bool{
	networkingv1.SchemeGroupVersion.WithKind("Ingress"):       true,
	networkingv1.SchemeGroupVersion.WithKind("IngressClass"):  false,
	corev1.SchemeGroupVersion.WithKind("Service"):             true,
	corev1.SchemeGroupVersion.WithKind("Secret"):              true,
	corev1.SchemeGroupVersion.WithKind("ConfigMap"):           true,
	discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"):  true,
	v1alpha1.GroupVersion.WithKind("TLSPolicy"):               true,
	corev1.SchemeGroupVersion.WithKind("Namespace"):           false,
	gatewayv1.SchemeGroupVersion.WithKind("GatewayClass"):     false,
	gatewayv1.SchemeGroupVersion.WithKind("Gateway"):          true,
	gatewayv1.SchemeGroupVersion.WithKind("ListenerSet"):      true,
	gatewayv1.SchemeGroupVersion.WithKind("HTTPRoute"):        true,
	gatewayv1.SchemeGroupVersion.WithKind("GRPCRoute"):        true,
	gatewayv1.SchemeGroupVersion.WithKind("TLSRoute"):         true,
	gatewayv1.SchemeGroupVersion.WithKind("TCPRoute"):         true,
	gatewayv1.SchemeGroupVersion.WithKind("UDPRoute"):         true,
	gatewayv1.SchemeGroupVersion.WithKind("ReferenceGrant"):   true,
	gatewayv1.SchemeGroupVersion.WithKind("BackendTLSPolicy"): true,
}

// supportedKinds maps a group and kind we read to the version we read.
func supportedVersion(gk schema.GroupKind) (string, bool) {
	for gvk := range supported {
		if gvk.GroupKind() == gk {
			return gvk.Version, true
		}
	}
	return "", false
}

// Loader decodes manifests. It holds only immutable state and is safe for
// concurrent use.
type Loader struct {
	dec runtime.Decoder
}

// NewLoader returns a Loader for the kinds listed in the package doc.
func NewLoader() (*Loader, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, networkingv1.AddToScheme, discoveryv1.AddToScheme, gatewayv1.Install} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("manifest: scheme: %w", err)
		}
	}
	return &Loader{dec: serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()}, nil
}

// Load reads path (see the package doc) with a new Loader.
func Load(path string) ([]metav1.Object, []Skipped, error) {
	l, err := NewLoader()
	if err != nil {
		return nil, nil, err
	}
	return l.Load(path)
}

// Files lists the manifest files Load reads for path, in order.
func Files(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var files []string
	for _, e := range entries { // ReadDir sorts by name
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		p := filepath.Join(path, name)
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			continue // dangling symlink or directory named *.yaml
		}
		files = append(files, p)
	}
	return files, nil
}

// Load reads every object under path. The error names the file, document,
// kind and name at fault; nothing is returned with an error.
func (l *Loader) Load(path string) ([]metav1.Object, []Skipped, error) {
	files, err := Files(path)
	if err != nil {
		return nil, nil, err
	}
	var objs []metav1.Object
	var skipped []Skipped
	seen := map[string]string{}
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			return nil, nil, err
		}
		o, s, err := l.decode(f, data, seen)
		if err != nil {
			return nil, nil, err
		}
		objs, skipped = append(objs, o...), append(skipped, s...)
	}
	return objs, skipped, nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("manifest: %s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("manifest: %s: larger than %d bytes", name, MaxFileSize)
	}
	return data, nil
}

// Decode decodes the documents of one file's content; name is used in
// errors and Skipped.
func (l *Loader) Decode(name string, data []byte) ([]metav1.Object, []Skipped, error) {
	return l.decode(name, data, map[string]string{})
}

// decoding is the state of one file's decode.
type decoding struct {
	l       *Loader
	file    string
	doc     int
	count   int
	seen    map[string]string // object key → "file: document n"
	objs    []metav1.Object
	skipped []Skipped
}

func (l *Loader) decode(file string, data []byte, seen map[string]string) ([]metav1.Object, []Skipped, error) {
	d := &decoding{l: l, file: file, seen: seen}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		d.doc++
		if err != nil {
			return nil, nil, fmt.Errorf("manifest: %s: document %d: %w", file, d.doc, err)
		}
		js, err := yaml.YAMLToJSONStrict(doc) // duplicate keys are errors
		if err != nil {
			return nil, nil, fmt.Errorf("manifest: %s: document %d: %w", file, d.doc, err)
		}
		if err := d.document(js, 0); err != nil {
			return nil, nil, err
		}
	}
	return d.objs, d.skipped, nil
}

// header is what every document must carry.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// document decodes one JSON document (depth > 0 for List items).
func (d *decoding) document(js []byte, depth int) error {
	js = bytes.TrimSpace(js)
	if len(js) == 0 || string(js) == "null" {
		return nil // empty document or comments only
	}
	if d.count++; d.count > MaxDocuments {
		return fmt.Errorf("manifest: %s: more than %d documents", d.file, MaxDocuments)
	}
	var h header
	if err := json.Unmarshal(js, &h); err != nil {
		return d.errorf(h, "not a Kubernetes object: %w", err)
	}
	if h.APIVersion == "" || h.Kind == "" {
		return d.errorf(h, "apiVersion and kind are required")
	}
	gv, err := schema.ParseGroupVersion(h.APIVersion)
	if err != nil {
		return d.errorf(h, "%w", err)
	}
	gvk := gv.WithKind(h.Kind)
	if h.Kind == "List" && gv.Group == "" && depth == 0 {
		for _, item := range h.Items {
			if err := d.document(item, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	namespaced, ok := supported[gvk]
	if !ok {
		if v, known := supportedVersion(gvk.GroupKind()); known {
			return d.errorf(h, "%s is not supported; use version %s", h.APIVersion, v)
		}
		d.skipped = append(d.skipped, Skipped{File: d.file, Document: d.doc, APIVersion: h.APIVersion,
			Kind: h.Kind, Namespace: h.Metadata.Namespace, Name: h.Metadata.Name})
		return nil
	}
	obj, err := d.l.object(gvk, js)
	if err != nil {
		return d.errorf(h, "%w", err)
	}
	return d.add(h, obj, namespaced)
}

func (d *decoding) add(h header, obj metav1.Object, namespaced bool) error {
	if obj.GetName() == "" {
		return d.errorf(h, "metadata.name is required")
	}
	switch {
	case !namespaced && obj.GetNamespace() != "":
		return d.errorf(h, "%s is cluster-scoped; remove metadata.namespace", h.Kind)
	case namespaced && obj.GetNamespace() == "":
		obj.SetNamespace(DefaultNamespace)
	}
	k := h.APIVersion + "/" + h.Kind + " " + objName(obj.GetNamespace(), obj.GetName())
	here := fmt.Sprintf("%s: document %d", d.file, d.doc)
	if prev, dup := d.seen[k]; dup {
		return d.errorf(h, "also defined at %s", prev)
	}
	d.seen[k] = here
	d.objs = append(d.objs, obj)
	return nil
}

// object decodes a supported kind strictly.
func (l *Loader) object(gvk schema.GroupVersionKind, js []byte) (metav1.Object, error) {
	if gvk.GroupVersion() == v1alpha1.GroupVersion {
		// Decoded without the scheme: the API package may not carry
		// generated deep-copy functions, which the scheme requires.
		p := &v1alpha1.TLSPolicy{}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p); err != nil {
			return nil, err
		}
		return p, nil
	}
	obj, _, err := l.dec.Decode(js, nil, nil)
	if err != nil {
		return nil, err
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("decoded %T, not an object", obj)
	}
	return m, nil
}

func (d *decoding) errorf(h header, format string, args ...any) error {
	what := strings.TrimSpace(h.Kind + " " + objName(h.Metadata.Namespace, h.Metadata.Name))
	if what != "" {
		what = " (" + what + ")"
	}
	return fmt.Errorf("manifest: %s: document %d%s: %w", d.file, d.doc, what, fmt.Errorf(format, args...))
}

func objName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
