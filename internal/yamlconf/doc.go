// Package yamlconf decodes YAML into tagged configuration structs strictly, naming the key and line of every bad value.
package yamlconf
