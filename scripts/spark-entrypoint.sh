#!/bin/bash
# Entrypoint of the Spark image (Dockerfile, target spark): Spark's Kubernetes container contract.
# Spark on Kubernetes starts the driver pod with `driver <spark-submit args>` and each executor pod
# with `executor` plus its settings in the environment (SPARK_EXECUTOR_*, SPARK_DRIVER_URL,
# SPARK_JAVA_OPT_<n>); anything else runs as given (e.g. `spark-submit ...` in the operator pod,
# `python3 ...` for a shell). tini is PID 1: it reaps children and forwards SIGTERM, so a deleted
# pod's JVM shuts down cleanly.
set -euo pipefail

classpath="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$SPARK_HOME/jars/*"
[ -z "${HADOOP_CONF_DIR:-}" ] || classpath="$HADOOP_CONF_DIR:$classpath"
[ -z "${SPARK_EXTRA_CLASSPATH:-}" ] || classpath="$classpath:$SPARK_EXTRA_CLASSPATH"

case "${1:-}" in
  driver)
    shift
    set -- "$SPARK_HOME/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?set by Spark on the driver pod}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    # the executor's JVM options, in the order Spark numbered them
    java_opts=()
    while IFS= read -r name; do
      java_opts+=("${!name}")
    done < <(compgen -e | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n)
    set -- "$JAVA_HOME/bin/java" "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY:?}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
      -cp "$classpath${SPARK_DIST_CLASSPATH:+:$SPARK_DIST_CLASSPATH}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL:?}" --executor-id "${SPARK_EXECUTOR_ID:?}" \
      --cores "${SPARK_EXECUTOR_CORES:?}" --app-id "${SPARK_APPLICATION_ID:?}" \
      --hostname "${SPARK_EXECUTOR_POD_IP:?}" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME:-}"
    ;;
esac
exec /usr/bin/tini -s -- "$@"
