# Tasks for glaze developers. `pip install -e '.[dev]'` provides `just` (rust-just).

# Run the whole test suite
test *args:
    python -m pytest -q {{args}}

# Lint the code
lint:
    ruff check src tests benchmarks

# Enrich the sample sheet and show its status
demo:
    glaze enrich sample_data/companies.csv --fields industry,website --workspace .glaze-demo
    glaze status --workspace .glaze-demo

# Measure engine overhead and the provider-bound run (see benchmarks/README.md)
bench:
    python -m benchmarks.engine --rows 100000
    python -m benchmarks.provider_bound --rows 5000 --latency 0.05 --concurrency 100
