"""Read a Parquet batch, bounded before reading (its metadata: row count, decompressed size) and
while reading (batch by batch), so a file too big is refused without being loaded whole.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perennial.data.batch_errors import BadBatch, human_size, too_many_rows

_PARQUET_BATCH_ROWS = 1024  # rows decoded at a time, so a reading stopped early held little


def _expanded_bytes(batch: pa.RecordBatch) -> int:
    """Bytes the batch's rows take decoded. A dictionary-encoded column counts each row's value: one
    long text repeated is small in Parquet and in Arrow, but not once it is rows of text."""
    size = 0
    for column in batch.columns:
        if not pa.types.is_dictionary(column.type):
            size += column.nbytes
            continue
        values = column.dictionary
        size += column.indices.nbytes
        if any(check(values.type) for check in _VARIABLE_WIDTH):
            lengths = pc.take(pc.binary_length(values), column.indices)
            size += int(pc.sum(lengths).as_py() or 0)
        else:
            size += len(column) * (values.nbytes // max(len(values), 1))
    return size


_VARIABLE_WIDTH = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)


def read_parquet(
    path: Path, name: str, max_rows: int | None = None, max_bytes: int | None = None
) -> pd.DataFrame:
    """A Parquet file's rows, refused from its metadata when it holds more than `max_rows` rows or
    expands to more than `max_bytes`, then read batch by batch and stopped as soon as the rows read
    pass either limit (metadata can understate: a crafted file, or one long text dictionary-encoded)."""
    parquet = pq.ParquetFile(path)
    meta = parquet.metadata
    if max_rows is not None and meta.num_rows > max_rows:
        raise too_many_rows(name, max_rows, meta.num_rows)
    if max_bytes is not None:
        declared = sum(
            max(meta.row_group(g).column(c).total_uncompressed_size, 0)
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        )
        if declared > max_bytes:
            raise BadBatch(
                f"{name} expands to {human_size(declared)}, above the {human_size(max_bytes)} limit "
                "(max_decompressed_bytes); it was not read: split it into smaller batches"
            )
    batches, rows, size = [], 0, 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, use_threads=False):
        rows += batch.num_rows
        if max_rows is not None and rows > max_rows:
            raise too_many_rows(name, max_rows)
        size += _expanded_bytes(batch)
        if max_bytes is not None and size > max_bytes:
            raise BadBatch(
                f"{name} expands to over {human_size(size)} after {rows:,} of its {meta.num_rows:,} rows,"
                f" above the {human_size(max_bytes)} limit (max_decompressed_bytes); reading stopped "
                "there: split it into smaller batches"
            )
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=parquet.schema_arrow).to_pandas()
