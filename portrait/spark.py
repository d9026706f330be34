"""The same tag definitions on Spark, for a bank whose data outgrows one machine.

Each bank table becomes a temporary view over its Parquet file and :func:`callvet.portrait.tags.render`
produces the identical SQL; model tags take their scores from the same ONNX model (scored on the driver
here; a cluster would broadcast the model into a pandas UDF). Tested equal to DuckDB on a small bank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from callvet.portrait.generate import TABLES
from callvet.portrait.tags import TagDefinition, render

__all__ = ["run_definition", "session"]


def session(app: str = "callvet-portrait", *, cores: int = 1) -> Any:
    """A local-mode Spark session sized for tests (one core, small shuffles, no UI)."""
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.ansi.enabled", "false")
        .getOrCreate()
    )


def run_definition(
    spark: Any, bank: Path, defn: TagDefinition, *, as_of_day: int, scores: pa.Table | None = None
) -> pa.Table:
    for t in TABLES:
        spark.read.parquet(str(Path(bank).resolve() / f"{t}.parquet")).createOrReplaceTempView(t)
    name = None
    if scores is not None:
        name = f"scores_{defn['dimension']}"
        rows = list(zip(scores["customer_id"].to_pylist(), scores["score"].to_pylist(), strict=True))
        spark.createDataFrame(rows, "customer_id BIGINT, score DOUBLE").createOrReplaceTempView(name)
    return spark.sql(render(defn, as_of_day=as_of_day, score_table=name)).toArrow()
