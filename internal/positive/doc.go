// Package positive applies the configuration rule "a number that is not
// positive is unset and takes its default".
package positive
