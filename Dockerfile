# syntax=docker/dockerfile:1
# The project's images, from one file. Build them with scripts/images.sh, which passes the build
# context, the pinned jars and the build arguments the same way to either builder:
#
#   scripts/images.sh spark prefect                    # buildah (daemonless; what the tests use)
#   LAKEHOUSE_IMAGE_BUILDER=docker scripts/images.sh spark prefect   # docker buildx / BuildKit
#
#   spark    the Spark driver/executor image of every SparkApplication (kubernetes.image), also
#            the base of the operator image the test cluster builds (tools/spark-operator):
#            Debian bookworm + OpenJDK 17 JRE + the distribution's Python 3.11
#            + pyspark (Spark 4.1.1, Scala 2.13) and the driver-side packages from
#              requirements.lock (hash-checked) under /opt/lakehouse/pylib, on the Python's
#              path through a .pth file (a job's own PYTHONPATH does not hide them); SPARK_HOME
#              is that pyspark, so spark-submit, the Spark jars and Python are the pinned ones
#            + the pinned Delta Lake, Kafka-connector and S3A (hadoop-aws + AWS SDK) jars
#              (named build context `jars`: scripts/setup.sh resolves them with Maven into
#              $LAKEHOUSE_CACHE_DIR/jars, scripts/images.sh links both sets into one context)
#            + spark_jobs/ and contracts/ under /opt/lakehouse
#            + /opt/entrypoint.sh: Spark's Kubernetes container contract (driver / executor);
#            user spark (uid 185), never root.
#   prefect  the Prefect worker and the flow-run pods (deploy.prefect_image): Debian bookworm's
#            Python 3.11 with requirements.lock installed (hash-checked) into /opt/venv and
#            flows/, tasks/, lakehouse/, dbt/, contracts/ under /opt/lakehouse (the
#            deployments' working directory); uid 10001.
#
# BASE_IMAGE is Debian bookworm. The default is the official debian image; scripts/images.sh
# builds the same distribution locally with debootstrap from Debian's packages when no image
# registry is reachable (the test cluster) and passes it here. An optional build secret
# `pip-ca` (a CA bundle file) is handed to pip/uv for TLS through an intercepting proxy; it is
# mounted for one RUN only and never stored in a layer.
#
# Versions: SPARK_VERSION / DELTA_VERSION / SCALA_BINARY_VERSION equal lakehouse/versions.py and
# UV_VERSION equals scripts/lib.sh (tests/deploy/test_dockerfile.py checks both).

ARG BASE_IMAGE=debian:bookworm-slim

# --------------------------------------------------------------------------- spark
FROM ${BASE_IMAGE} AS spark
ARG SPARK_VERSION=4.1.1
ARG DELTA_VERSION=4.1.0
ARG SCALA_BINARY_VERSION=2.13
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
USER 0:0
# man dirs: the JRE's postinst expects them, minimal images drop them. Versions are those of
# the Debian release (BASE_IMAGE), which moves only by security fixes: not pinned one by one.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
         openjdk-17-jre-headless python3 python3-pip tini procps ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 185 spark \
    && useradd --system --uid 185 --gid spark --home-dir /opt/spark/work-dir \
         --shell /usr/sbin/nologin spark \
    && mkdir -p /opt/spark/work-dir && chown 185:185 /opt/spark/work-dir
COPY requirements.lock /tmp/requirements.lock
# pyspark and the driver-side packages, hash-checked from the lock (pyspark is built from its
# hash-checked sdist)
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && awk 'BEGIN { split("pyspark py4j pydantic pydantic-core annotated-types typing-extensions typing-inspection pyyaml delta-spark", w, " "); for (i in w) want[w[i]] = 1 } \
            /^[^ #]/ { split($1, p, "=="); keep = (p[1] in want) } \
            keep && !/^ *#/' /tmp/requirements.lock > /tmp/driver-requirements.txt \
    && python3 -m pip install --no-cache-dir --no-deps --require-hashes --no-warn-script-location \
         --target /opt/lakehouse/pylib -r /tmp/driver-requirements.txt \
    && rm -rf /tmp/requirements.lock /tmp/driver-requirements.txt /root/.cache \
    && echo /opt/lakehouse/pylib > /usr/lib/python3/dist-packages/lakehouse-pylib.pth \
    && ln -s /opt/lakehouse/pylib/pyspark /opt/spark/home \
    && test "$(PYTHONPATH=/opt/lakehouse/pylib python3 -c 'import pyspark; print(pyspark.__version__)')" = "${SPARK_VERSION}"
# Add each pinned jar unless the Spark distribution already ships that artifact (one copy per
# library on the classpath, as lakehouse/jars.py does for the pyspark wheel locally).
# hadolint ignore=DL3022
COPY --from=jars / /tmp/extra-jars/
RUN for jar in /tmp/extra-jars/*.jar; do \
      name=$(basename "$jar"); \
      artifact=$(sed -E 's/^(.*)-[0-9][^-]*\.jar$/\1/' <<<"$name"); \
      shipped=$(find /opt/spark/home/jars/ -maxdepth 1 -name "${artifact}-[0-9]*.jar" | head -n 1); \
      if [ -z "$shipped" ]; then install -m 0644 "$jar" /opt/spark/home/jars/; fi; \
    done \
    && ls /opt/spark/home/jars/delta-spark_${SCALA_BINARY_VERSION}-${DELTA_VERSION}.jar >/dev/null \
    && rm -rf /tmp/extra-jars
COPY --chmod=0755 scripts/spark-entrypoint.sh /opt/entrypoint.sh
COPY spark_jobs/ /opt/lakehouse/spark_jobs/
COPY contracts/ /opt/lakehouse/contracts/
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    SPARK_HOME=/opt/spark/home \
    PATH=/opt/spark/home/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYSPARK_PYTHON=/usr/bin/python3 \
    PYSPARK_DRIVER_PYTHON=/usr/bin/python3 \
    PYTHONPATH=/opt/lakehouse \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# the user of Spark's own images: spark, uid/gid 185 (kubernetes.run_as_user)
USER 185:185
WORKDIR /opt/spark/work-dir
ENTRYPOINT ["/opt/entrypoint.sh"]

# --------------------------------------------------------------------------- prefect
FROM ${BASE_IMAGE} AS prefect
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG UV_VERSION=0.13.9
USER 0:0
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
         python3 python3-pip ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 lakehouse \
    && useradd --system --uid 10001 --gid lakehouse --home-dir /opt/lakehouse \
         --shell /usr/sbin/nologin lakehouse
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/lakehouse \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREFECT_HOME=/tmp/prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    UV_NO_CACHE=1
COPY requirements.lock /tmp/requirements.lock
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca SSL_CERT_FILE=/run/secrets/pip-ca; fi \
    && python3 -m pip install --no-cache-dir --break-system-packages --target /tmp/uv "uv==${UV_VERSION}" \
    && /tmp/uv/bin/uv venv --python /usr/bin/python3 /opt/venv \
    && /tmp/uv/bin/uv pip install --python /opt/venv/bin/python --require-hashes --compile-bytecode \
         -r /tmp/requirements.lock \
    && rm -rf /tmp/uv /tmp/requirements.lock /root/.cache
WORKDIR /opt/lakehouse
COPY pyproject.toml ./
COPY lakehouse/ lakehouse/
COPY spark_jobs/ spark_jobs/
COPY flows/ flows/
COPY tasks/ tasks/
COPY contracts/ contracts/
COPY dbt/ dbt/
COPY deployments/ deployments/
# dbt writes its target/ and logs/ next to the project. Everything is compiled to bytecode here
# (the packages by `uv pip install --compile-bytecode`): with PYTHONDONTWRITEBYTECODE, a pod
# would otherwise compile every module it imports from source, at every start.
RUN mkdir -p dbt/target dbt/logs && chown -R 10001:10001 dbt/target dbt/logs \
    && python -m compileall -q lakehouse spark_jobs flows tasks
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["prefect", "worker", "start", "--pool", "lakehouse-kubernetes", "--type", "kubernetes", "--with-healthcheck"]
