package chart

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// snippetPath is the README install section the lead pastes into
// README.md; every helm command in it is rendered, checked and applied.
const snippetPath = "docs/install-readme-snippet.md"

var fence = regexp.MustCompile("(?s)```(?:sh|bash|shell)\n(.*?)```")

// snippetCommands returns every `helm install` command in the snippet's
// shell blocks, continuation lines joined.
func snippetCommands(doc string) []string {
	var out []string
	for _, m := range fence.FindAllStringSubmatch(doc, -1) {
		for _, cmd := range strings.Split(strings.ReplaceAll(m[1], "\\\n", " "), "\n") {
			if cmd = strings.TrimSpace(cmd); strings.HasPrefix(cmd, "helm install ") {
				out = append(out, cmd)
			}
		}
	}
	return out
}

// shellWords splits a command line the way sh does for the subset used in
// docs: blanks separate words, single and double quotes group.
func shellWords(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '\'' || ch == '"':
			j := strings.IndexByte(s[i+1:], ch)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c quote", ch)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == ' ' || ch == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '$' || ch == '`' || ch == '\\':
			return nil, fmt.Errorf("shell expansion %q is not supported in documented commands", ch)
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// parseHelmInstall turns `helm install NAME CHART [flags]` into an install.
// Flags the test does not understand are an error, so the docs cannot
// show a command the tests did not render.
func parseHelmInstall(cmd string) (install, error) {
	w, err := shellWords(cmd)
	if err != nil {
		return install{}, err
	}
	if len(w) < 4 || w[0] != "helm" || w[1] != "install" {
		return install{}, fmt.Errorf("not `helm install NAME CHART`: %q", cmd)
	}
	in := install{Namespace: "default"}
	var pos []string
	for i := 2; i < len(w); i++ {
		flag, val, hasVal := strings.Cut(w[i], "=")
		takes := map[string]bool{"-n": true, "--namespace": true, "-f": true, "--values": true, "--set": true, "--set-string": true}
		if !strings.HasPrefix(flag, "-") {
			pos = append(pos, w[i])
			continue
		}
		if takes[flag] && !hasVal {
			if i+1 >= len(w) {
				return install{}, fmt.Errorf("%s needs a value", flag)
			}
			i++
			val = w[i]
		}
		switch flag {
		case "-n", "--namespace":
			in.Namespace = val
		case "-f", "--values":
			in.ValueFiles = append(in.ValueFiles, val)
		case "--set":
			in.Set = append(in.Set, val)
		case "--set-string":
			in.SetString = append(in.SetString, val)
		case "--create-namespace", "--wait", "--atomic":
		default:
			return install{}, fmt.Errorf("flag %s is not understood by test/chart", flag)
		}
	}
	if len(pos) != 2 {
		return install{}, fmt.Errorf("want NAME and CHART, got %q", pos)
	}
	in.Release, in.Chart = pos[0], pos[1]
	return in, nil
}

// installGuidePath is the install guide; its helm install commands are
// rendered, checked and applied too.
const installGuidePath = "docs/install.md"

// snippetCases are the README snippet's commands as render cases.
func snippetCases(t *testing.T) []renderCase { return docCases(t, snippetPath, "snippet") }

// docCases are the helm install commands of a document as render cases.
func docCases(t *testing.T, path, prefix string) []renderCase {
	t.Helper()
	cmds := snippetCommands(string(readRepoFile(t, path)))
	if len(cmds) == 0 {
		t.Fatalf("%s shows no helm install command", path)
	}
	var out []renderCase
	for i, cmd := range cmds {
		in, err := parseHelmInstall(cmd)
		if err != nil {
			t.Fatalf("%s command %d: %v", path, i+1, err)
		}
		out = append(out, renderCase{name: fmt.Sprintf("%s-%d", prefix, i+1), in: in, check: func(*testing.T, *rendered) {}})
	}
	return out
}

// allCases are the render cases plus the documented commands.
func allCases(t *testing.T) []renderCase {
	return slices.Concat(renderCases(), snippetCases(t), docCases(t, installGuidePath, "install-guide"))
}

// TestReadmeSnippet: the documented commands render (with the same
// invariants as every case), the EKS one through ci/nlb-values.yaml — the
// file TestRender checks in detail — and it yields an NLB with PROXY v2.
func TestReadmeSnippet(t *testing.T) {
	nlb := 0
	for _, tc := range snippetCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.in)
			checkInvariants(t, tc.in, r)
			for _, f := range tc.in.ValueFiles {
				if f != "charts/meshgate/ci/nlb-values.yaml" {
					continue
				}
				nlb++
				svc := byName[corev1.Service](t, r, "Service", tc.in.Release)
				for k, v := range map[string]string{
					nlbPrefix + "type": "external", nlbPrefix + "nlb-target-type": "ip", nlbPrefix + "proxy-protocol": "*",
				} {
					if svc.Annotations[k] != v {
						t.Errorf("documented NLB install: %s=%q, want %q (all: %v)", k, svc.Annotations[k], v, svc.Annotations)
					}
				}
			}
		})
	}
	if nlb != 1 {
		t.Errorf("%d documented commands use charts/meshgate/ci/nlb-values.yaml, want 1", nlb)
	}
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"helm install a b", []string{"helm", "install", "a", "b"}, false},
		{`--set 'x={1, 2}'  --set-string "y=z w"`, []string{"--set", "x={1, 2}", "--set-string", "y=z w"}, false},
		{"a'b'c", []string{"abc"}, false},
		{"'open", nil, true},
		{"--set x=$HOME", nil, true},
	} {
		got, err := shellWords(tc.in)
		if (err != nil) != tc.err || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestReadmeCarriesSnippet keeps README.md's install section the very text
// whose helm commands the tests above render and apply.
func TestReadmeCarriesSnippet(t *testing.T) {
	readme := string(readRepoFile(t, "README.md"))
	snippet := strings.TrimSpace(string(readRepoFile(t, snippetPath)))
	if !strings.Contains(readme, snippet) {
		t.Fatalf("README.md does not contain %s verbatim; paste it into the README's Install section", snippetPath)
	}
}
