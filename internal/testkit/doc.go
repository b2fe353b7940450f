// Package testkit holds the fixtures every package's tests share: throw-away
// certificates (self-signed or issued by a test CA, in the forms tests use:
// tls.Certificate, PEM, a CertPool), one polling helper with a bounded
// deadline, and the check that a test's privileges and tools are there.
//
// It imports nothing of meshgate, so any package's tests (internal or
// external test package) may import it without a cycle; internal/archtest
// allows it everywhere. Nothing here is for production code.
package testkit
