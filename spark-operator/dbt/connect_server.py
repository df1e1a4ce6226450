"""Driver of the Spark Connect server SparkApplication (spark-operator/dbt/).

spark-submit refuses to run Spark's own Connect server main class in cluster mode, which is how
the operator submits every app. So the server comes up as a plugin of an ordinary application
instead: ``spark.plugins=org.apache.spark.sql.connect.SparkConnectPlugin`` (set in the
SparkApplication) starts the gRPC endpoint with the driver's SparkContext. This script only
starts Spark with Hive support (the catalog dbt names tables in) and stays up until the pod is
asked to stop.
"""

from __future__ import annotations

import signal
import sys
import threading

from pyspark.sql import SparkSession


def main() -> int:
    """Start the session, then wait for SIGTERM/SIGINT; stop Spark cleanly."""
    builder = SparkSession.builder.appName("lakehouse-spark-connect").enableHiveSupport()
    spark = builder.getOrCreate()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("Spark Connect server up (port from spark.connect.grpc.binding.port)", flush=True)
    while not stop.wait(timeout=60):
        if spark.sparkContext._jsc is None:  # the context died: let the operator restart the app
            return 1
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
