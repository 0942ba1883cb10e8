"""`type = "lookup"`: a join against a local CSV/Parquet reference table, one query per batch of rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import polars as pl

from glaze_cli.config import ProviderConfig
from glaze_cli.errors import ConfigError, GlazeError
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.base import Provider, ProviderType
from glaze_cli.sheet import read_sheet
from glaze_cli.store import ArrowStream


class LookupProvider(Provider):
    """Matches sheet columns to reference columns; the reference lives in a private in-memory DuckDB."""

    type = "lookup"
    cached = False
    batch_size = 2000

    def __init__(self, config: ProviderConfig, source: str, base_dir: Path) -> None:
        opts = config.options
        key = f"providers.{config.name}"
        self.path = (base_dir / opts["path"]).resolve()
        self.match: dict[str, str] = dict(opts["match"])
        self.columns: dict[str, str] = dict(opts["outputs"])
        if not self.match:
            raise ConfigError(f"config {source}: {key}.match: name at least one sheet column = reference column")
        try:
            reference = read_sheet(self.path)
        except GlazeError as exc:
            raise ConfigError(f"config {source}: {key}.path: {exc.message}") from None
        missing = [c for c in [*self.match.values(), *self.columns.values()] if c not in reference.columns]
        if missing:
            raise ConfigError(
                f"config {source}: {key}: reference {self.path.name} has no column {missing[0]!r} "
                f"(it has {', '.join(reference.columns)})"
            )
        # Duplicate reference keys keep their first row, so a lookup gives one answer per key.
        keys = list(self.match.values())
        reference = reference.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys))
        self._reference = reference.unique(subset=keys, keep="first", maintain_order=True)
        self._con = duckdb.connect(":memory:")
        self._con.register("_reference", ArrowStream(self._reference))
        self._con.execute("CREATE TABLE reference AS SELECT *, true AS __glaze_hit FROM _reference")
        self._con.unregister("_reference")
        super().__init__(config.name, inputs=list(self.match), outputs=list(self.columns), limits=config.limits,
                         cost=config.cost, settings={**opts, "path": str(self.path)})

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """One lookup (the runner normally batches through fetch_batch)."""
        return (await self.fetch_batch([inputs]))[0]

    async def fetch_batch(self, batch: Sequence[Mapping[str, str]]) -> list[Answer]:
        """One join for the whole batch."""
        frame = pl.DataFrame(
            {f"k{i}": [row[col] for row in batch] for i, col in enumerate(self.match)},
            schema={f"k{i}": pl.String for i in range(len(self.match))},
        ).with_row_index("idx")
        conditions = " AND ".join(f'b.k{i} = r."{ref}"' for i, ref in enumerate(self.match.values()))
        outputs = ", ".join(f'r."{col}" AS o{j}' for j, col in enumerate(self.columns.values()))
        self._con.register("batch", ArrowStream(frame))
        found = self._con.execute(
            f"SELECT b.idx, r.__glaze_hit IS NOT NULL AS hit, {outputs} FROM batch b "
            f"LEFT JOIN reference r ON {conditions} ORDER BY b.idx"
        ).fetchall()
        self._con.unregister("batch")
        answers = []
        for row in found:
            if not row[1]:
                answers.append(Answer(Outcome.NOT_FOUND))
                continue
            values = {f: (v if v is None or v.strip() else None) for f, v in zip(self.columns, row[2:], strict=True)}
            answers.append(Answer(Outcome.OK, values))
        return answers


def build(config: ProviderConfig, source: str, base_dir: Path) -> Provider:
    """Factory used by the provider registry."""
    return LookupProvider(config, source, base_dir)


PROVIDER_TYPE = ProviderType("lookup", build)
