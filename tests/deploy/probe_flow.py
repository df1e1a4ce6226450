"""A flow deployed only by tests/deploy: shows what a flow run of the process pool receives.

It logs the settings the way any code would (secrets masked by SecretStr), the names of the
credential variables it got, and a SHA-256 of each value: the test compares the hashes with
the known secrets (they were delivered from the Secret blocks) and searches every log for the
values themselves (they never appear).
"""

from __future__ import annotations

import hashlib
import os

from prefect import flow, get_run_logger

from lakehouse.settings import get_settings

CREDENTIALS = ("LAKEHOUSE_KAFKA__SASL_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@flow(name="secret-probe", persist_result=True)
def secret_probe() -> dict[str, str]:
    """Log masked settings and credential hashes; return the hashes."""
    logger = get_run_logger()
    settings = get_settings()
    logger.info("settings: %r", settings)
    logger.info("kafka settings: %s", settings.kafka.model_dump())
    logger.info("deploy settings: %s", settings.deploy.model_dump_json())
    logger.info("credential variables: %s", sorted(n for n in CREDENTIALS if os.environ.get(n)))
    hashes = {n: hashlib.sha256(os.environ.get(n, "").encode()).hexdigest() for n in CREDENTIALS}
    for name, digest in hashes.items():
        logger.info("sha256 %s=%s", name, digest)
    return hashes
