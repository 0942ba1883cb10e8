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

# glaze side by side with a hand-written peer and the bound; writes benchmarks/results.md (see benchmarks/README.md)
bench *args:
    python -m benchmarks.compare {{args}}
