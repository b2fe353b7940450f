package translate

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bench10k returns a cache with 10,000 Ingresses over 100 namespaces, each
// with two paths, TLS on every tenth (100 secrets), 1,000 Services with one
// EndpointSlice of three endpoints each.
func bench10k(b *testing.B) *Cache {
	objs := []metav1.Object{ourClass(true)}
	for n := 0; n < 100; n++ {
		ns := fmt.Sprintf("ns%d", n)
		objs = append(objs, tlsSecret(b, ns, "tls", "bench"))
		for s := 0; s < 10; s++ {
			svc := fmt.Sprintf("svc%d", s)
			objs = append(objs, service(ns, svc, "http=80>8080"),
				slice(ns, svc+"-1", svc, "http", 8080, ready(fmt.Sprintf("10.%d.%d.1", n, s)),
					ready(fmt.Sprintf("10.%d.%d.2", n, s)), ready(fmt.Sprintf("10.%d.%d.3", n, s))))
		}
		for i := 0; i < 100; i++ {
			host := fmt.Sprintf("h%d.%s.example.com", i, ns)
			svc := fmt.Sprintf("svc%d", i%10)
			opts := []ingOpt{age(i), rule(host, pathSpec{prefixT, "/", svc, 80}, pathSpec{exactT, "/api", svc, "http"})}
			if i%10 == 0 {
				opts = append(opts, tlsFor("tls", host), annotate(AnnotationReadTimeout, "30s"))
			}
			objs = append(objs, ingress(ns, fmt.Sprintf("ing%d", i), opts...))
		}
	}
	return cacheOf(objs...)
}

func BenchmarkBuild10k(b *testing.B) {
	c := bench10k(b)
	b.ReportAllocs()
	for b.Loop() {
		tbl, probs := ToTable(c, Options{})
		if len(probs) != 0 || len(tbl.HTTP.Hosts) != 10000 {
			b.Fatalf("%d problems, %d hosts", len(probs), len(tbl.HTTP.Hosts))
		}
	}
}
