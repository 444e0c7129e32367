"""What users look at, above the compiler: `summary`, `plot`, `diff`, `render`, `schema`, the
`init` scaffold and the `bench` command. Nothing below this package imports it."""
