// Package archtest holds the test that keeps the layering of
// docs/architecture.md: it lists the imports of every package of the module
// and fails on one that its layer may not use (the session layer importing
// the data plane, the translation importing the data plane, the routing
// table importing anything of ours, ...). It has no code of its own.
package archtest
