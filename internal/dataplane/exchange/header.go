package exchange

// Field is one header or trailer field line. Name is as received (HTTP/1.1
// keeps the client's case; HTTP/2 and HTTP/3 names are lowercase or, when
// they came through net/http, canonical); names compare ASCII
// case-insensitively.
type Field struct {
	Name, Value string
}

// Header is an ordered list of fields. Order and duplicates are kept as
// received, so a proxied message keeps its field order. The zero value is
// an empty header ready to use.
//
// A Header is not safe for concurrent use. Front ends reuse a Header's
// storage from one exchange to the next: a handler must not keep a Header,
// or a slice returned by Fields, after the exchange it belongs to ended
// (strings taken out of it stay valid).
type Header struct {
	f []Field
}

// Len returns the number of field lines.
func (h *Header) Len() int { return len(h.f) }

// Fields returns the field lines in order. The slice is the Header's own
// storage: callers may change values in place but must not append to it or
// keep it past the exchange.
func (h *Header) Fields() []Field { return h.f }

// Reset removes every field and keeps the storage.
func (h *Header) Reset() {
	clear(h.f)
	h.f = h.f[:0]
}

// Get returns the value of the first field named name.
func (h *Header) Get(name string) (string, bool) {
	for i := range h.f {
		if EqualFold(h.f[i].Name, name) {
			return h.f[i].Value, true
		}
	}
	return "", false
}

// Value returns the value of the first field named name, or "".
func (h *Header) Value(name string) string {
	v, _ := h.Get(name)
	return v
}

// Has reports whether a field named name is present.
func (h *Header) Has(name string) bool {
	_, ok := h.Get(name)
	return ok
}

// Count returns how many field lines are named name.
func (h *Header) Count(name string) int {
	n := 0
	for i := range h.f {
		if EqualFold(h.f[i].Name, name) {
			n++
		}
	}
	return n
}

// Add appends a field line.
func (h *Header) Add(name, value string) {
	h.f = append(h.f, Field{Name: name, Value: value})
}

// Set replaces every field named name by one line with value, at the
// position of the first one (appended when absent).
func (h *Header) Set(name, value string) {
	for i := range h.f {
		if EqualFold(h.f[i].Name, name) {
			h.f[i].Value = value
			h.delFrom(i+1, name)
			return
		}
	}
	h.Add(name, value)
}

// Del removes every field named name and reports whether there was one.
func (h *Header) Del(name string) bool {
	for i := range h.f {
		if EqualFold(h.f[i].Name, name) {
			h.delFrom(i, name)
			return true
		}
	}
	return false
}

// delFrom removes the fields named name at index i and after.
func (h *Header) delFrom(i int, name string) {
	j := i
	for ; i < len(h.f); i++ {
		if !EqualFold(h.f[i].Name, name) {
			h.f[j] = h.f[i]
			j++
		}
	}
	clear(h.f[j:])
	h.f = h.f[:j]
}

// DelFunc removes every field for which drop returns true, keeping the
// order of the others.
func (h *Header) DelFunc(drop func(Field) bool) {
	j := 0
	for i := range h.f {
		if !drop(h.f[i]) {
			h.f[j] = h.f[i]
			j++
		}
	}
	clear(h.f[j:])
	h.f = h.f[:j]
}

// CopyFrom replaces h's fields by a copy of o's (the strings are shared).
func (h *Header) CopyFrom(o *Header) {
	h.Reset()
	h.f = append(h.f, o.f...)
}

// EqualFold reports whether a and b are equal under ASCII case folding
// (field names and tokens are ASCII; no Unicode folding).
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// HasToken reports whether the comma-separated list v contains token
// (ASCII case-insensitive, optional whitespace around elements), as in
// Connection, Upgrade or TE values.
func HasToken(v, token string) bool {
	for len(v) > 0 {
		var elem string
		elem, v = nextElem(v)
		if EqualFold(elem, token) {
			return true
		}
	}
	return false
}

// nextElem returns the first element of a comma-separated list, trimmed of
// spaces and tabs, and the rest after the comma.
func nextElem(v string) (elem, rest string) {
	i := 0
	for i < len(v) && v[i] != ',' {
		i++
	}
	elem, rest = v[:i], ""
	if i < len(v) {
		rest = v[i+1:]
	}
	return TrimOWS(elem), rest
}

// Tokens calls fn with each non-empty element of the comma-separated list
// v, trimmed of optional whitespace, until fn returns false.
func Tokens(v string, fn func(string) bool) {
	for len(v) > 0 {
		var elem string
		elem, v = nextElem(v)
		if elem != "" && !fn(elem) {
			return
		}
	}
}

// TrimOWS removes leading and trailing spaces and tabs (RFC 9110 OWS).
func TrimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
