"""Prefect result storage in the bucket: the result block `make blocks` saves for an s3:// results
URL writes a real task result into the S3-compatible store and reads it back from there.

The block holds the endpoint and region (lakehouse.objectstore.fsspec_options), never the keys:
the flow run gets them from its environment (AWS_*), as deployments do.
"""

from __future__ import annotations

import json
import uuid

import pytest

from lakehouse.blocks import _result_block
from lakehouse.settings import Settings
from lakehouse.testing.s3_server import S3Server
from tests.fixtures.s3 import object_store

pytestmark = [pytest.mark.s3, pytest.mark.usefixtures("prefect_harness")]


def test_task_results_persist_in_the_bucket_and_read_back(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs
    from prefect import flow, task
    from prefect.results import ResultStore

    bucket = f"results-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    settings = Settings(deploy=object_store(s3_server, results_url=f"s3://{bucket}/prefect-results"))
    block = _result_block(settings)
    name = f"s3-results-{uuid.uuid4().hex[:6]}"
    block.save(name, overwrite=True)
    assert s3_server.secret_key not in json.dumps(block.model_dump(mode="json"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    storage = type(block).load(name)

    @task(persist_result=True, result_storage=storage, result_storage_key="probe-{parameters[n]}")
    def square(n: int) -> dict[str, int]:
        return {"n": n, "square": n * n}

    @flow(persist_result=True, result_storage=storage)
    def probe(n: int) -> dict[str, int]:
        return square(n)

    assert probe(7) == {"n": 7, "square": 49}
    fs = s3fs.S3FileSystem(**s3_server.storage_options())
    assert f"{bucket}/prefect-results/probe-7" in fs.ls(f"{bucket}/prefect-results")
    record = ResultStore(result_storage=storage).read("probe-7")
    assert record.result == {"n": 7, "square": 49}
