package standalone

import (
	"fmt"
	"os"
	"strings"

	"github.com/meshgate/meshgate/internal/source/manifest"
)

// fingerprint summarises the manifest files' names, sizes and modification
// times (symlinks followed, so a ConfigMap volume's atomic swap shows). It
// costs one directory read and one stat per file.
func fingerprint(path string) string {
	files, err := manifest.Files(path)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s:error;", f)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}
