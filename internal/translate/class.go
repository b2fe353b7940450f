package translate

import (
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
)

// Well-known IngressClass annotations.
const (
	// LegacyClassAnnotation is the pre-IngressClass way to pick a class.
	LegacyClassAnnotation = "kubernetes.io/ingress.class"
	// DefaultClassAnnotation marks the IngressClass of Ingresses that name
	// none.
	DefaultClassAnnotation = networkingv1.AnnotationIsDefaultIngressClass
)

// IsOurs reports whether meshgate serves ing, given every IngressClass in
// the cluster (nil entries are ignored):
//
//   - spec.ingressClassName set: the class of that name exists and its
//     spec.controller is opts.ControllerName;
//   - else the kubernetes.io/ingress.class annotation set: it equals
//     opts.IngressClass;
//   - else one of our classes is annotated
//     ingressclass.kubernetes.io/is-default-class: "true".
//
// Empty option fields take their defaults. IsOurs only reads its arguments.
func IsOurs(ing *networkingv1.Ingress, classes []*networkingv1.IngressClass, opts Options) bool {
	opts = opts.WithDefaults()
	if name := ing.Spec.IngressClassName; name != nil {
		i := slices.IndexFunc(classes, func(c *networkingv1.IngressClass) bool {
			return c != nil && c.Name == *name
		})
		return i >= 0 && classes[i].Spec.Controller == opts.ControllerName
	}
	if v, ok := ing.Annotations[LegacyClassAnnotation]; ok {
		return v == opts.IngressClass
	}
	return slices.ContainsFunc(classes, func(c *networkingv1.IngressClass) bool {
		return c != nil && c.Spec.Controller == opts.ControllerName &&
			c.Annotations[DefaultClassAnnotation] == "true"
	})
}

// selectIngresses keeps our Ingresses, oldest first, and parses their
// annotations.
func selectIngresses(s *state) {
	classes := s.c.IngressClasses()
	for _, ing := range s.c.Ingresses() {
		if !IsOurs(ing, classes, s.opts) {
			continue
		}
		s.ingresses = append(s.ingresses, ing)
		a, errs := parseAnnotations(ing.Annotations)
		for _, err := range errs {
			s.ingressProblem(ing, ReasonInvalidAnnotation, "%v; using the default", err)
		}
		s.annots[key(ing)] = a
	}
	slices.SortStableFunc(s.ingresses, func(a, b *networkingv1.Ingress) int { return compareAge(a, b) })
}
