package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Volumes are materialised as files: each volume gets a directory under
// the Pod's work directory, and each volumeMount copies (subPath: a part
// of) it into the Pod root at mountPath. The containers of a Pod share one
// root, so a path mounted by one is seen by all; an emptyDir is therefore
// shared only where containers mount it at the same path. Contents are
// written once, when the Pod starts: later Secret or ConfigMap changes are
// not propagated.

// errUnsupported marks what the agent deliberately does not emulate; the
// Pod then stays Pending with the message.
var errUnsupported = errors.New("not supported by the test node agent")

// volumeFile is one file of a volume: path relative to the volume root.
type volumeFile struct {
	path string
	data []byte
	mode fs.FileMode
}

// volumeFiles returns the files of volume v (nil for an emptyDir).
func volumeFiles(ctx context.Context, src objectSource, pod *corev1.Pod, v corev1.Volume, podIP, hostIP string) ([]volumeFile, error) {
	switch {
	case v.EmptyDir != nil:
		return nil, nil
	case v.Secret != nil:
		return secretFiles(ctx, src, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, v.Secret.DefaultMode)
	case v.ConfigMap != nil:
		return configMapFiles(ctx, src, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, v.ConfigMap.DefaultMode)
	case v.DownwardAPI != nil:
		return downwardFiles(pod, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode, podIP, hostIP)
	case v.Projected != nil:
		var out []volumeFile
		for _, s := range v.Projected.Sources {
			var files []volumeFile
			var err error
			switch {
			case s.Secret != nil:
				files, err = secretFiles(ctx, src, s.Secret.Name, s.Secret.Items, s.Secret.Optional, v.Projected.DefaultMode)
			case s.ConfigMap != nil:
				files, err = configMapFiles(ctx, src, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, v.Projected.DefaultMode)
			case s.DownwardAPI != nil:
				files, err = downwardFiles(pod, s.DownwardAPI.Items, v.Projected.DefaultMode, podIP, hostIP)
			default:
				err = fmt.Errorf("projected source other than secret, configMap, downwardAPI: %w", errUnsupported)
			}
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			out = append(out, files...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("volume %s: only emptyDir, secret, configMap, downwardAPI and projected volumes: %w", v.Name, errUnsupported)
}

func fileMode(m *int32) fs.FileMode {
	if m == nil {
		return 0o644
	}
	return fs.FileMode(*m) & fs.ModePerm
}

func keyFiles(data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, what string) ([]volumeFile, error) {
	var out []volumeFile
	if len(items) == 0 {
		for k, d := range data {
			out = append(out, volumeFile{path: k, data: d, mode: fileMode(defaultMode)})
		}
		return out, nil
	}
	for _, it := range items {
		d, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %s", what, it.Key)
		}
		mode := fileMode(defaultMode)
		if it.Mode != nil {
			mode = fileMode(it.Mode)
		}
		out = append(out, volumeFile{path: it.Path, data: d, mode: mode})
	}
	return out, nil
}

func secretFiles(ctx context.Context, src objectSource, name string, items []corev1.KeyToPath, optional *bool, mode *int32) ([]volumeFile, error) {
	s, err := src.secret(ctx, name)
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return keyFiles(s.Data, items, mode, "secret "+name)
}

func configMapFiles(ctx context.Context, src objectSource, name string, items []corev1.KeyToPath, optional *bool, mode *int32) ([]volumeFile, error) {
	cm, err := src.configMap(ctx, name)
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return nil, nil
		}
		return nil, fmt.Errorf("configMap %s: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles(data, items, mode, "configMap "+name)
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, mode *int32, podIP, hostIP string) ([]volumeFile, error) {
	var out []volumeFile
	for _, it := range items {
		if it.FieldRef == nil {
			return nil, fmt.Errorf("downwardAPI %s: resourceFieldRef: %w", it.Path, errUnsupported)
		}
		v, err := podField(pod, it.FieldRef.FieldPath, podIP, hostIP)
		if err != nil {
			return nil, err
		}
		m := fileMode(mode)
		if it.Mode != nil {
			m = fileMode(it.Mode)
		}
		out = append(out, volumeFile{path: it.Path, data: []byte(v), mode: m})
	}
	return out, nil
}

// inside joins root and a path from a Pod spec. The path is cleaned as an
// absolute one first, so ".." can never climb out of root.
func inside(root, p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q holds a NUL byte", p)
	}
	return filepath.Join(root, filepath.FromSlash(path.Clean("/"+p))), nil
}

// writeVolume writes files under dir.
func writeVolume(dir string, files []volumeFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		p, err := inside(dir, f.path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// mountInto copies volume directory vol (or its subPath) to root at
// mountPath.
func mountInto(root, vol string, m corev1.VolumeMount) error {
	src := vol
	if m.SubPath != "" {
		p, err := inside(vol, m.SubPath)
		if err != nil {
			return err
		}
		src = p
	}
	dst, err := inside(root, m.MountPath)
	if err != nil {
		return err
	}
	return copyTree(src, dst)
}

// copyTree copies a file or a directory tree.
func copyTree(src, dst string) error {
	st, err := os.Stat(src)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dst, 0o755) // an empty subPath, created as kubelet does
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, st.Mode().Perm())
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}
