"""Code that runs inside the Spark driver: session, I/O, pure transforms and job entrypoints.

Never imports prefect, kubernetes, flows, tasks or lakehouse's backends: everything arrives through
command-line arguments and Spark conf, so one entrypoint runs under spark-submit, under the Spark
operator, and in tests alike.
"""
