package chart

import (
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func schemaGK(group, kind string) schema.GroupKind {
	return schema.GroupKind{Group: group, Kind: kind}
}

// cutSub splits "ingresses/status" into resource and subresource.
func cutSub(r string) (string, string, bool) { return strings.Cut(r, "/") }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
