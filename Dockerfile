# syntax=docker/dockerfile:1
# Two images from one file (docker build --target ...):
#
#   spark    the Spark driver/executor image of every SparkApplication (kubernetes.image):
#            the official Apache Spark 4.1.1 image (Scala 2.13, Java 17, python3 variant)
#            + the pinned Delta Lake and Kafka-connector jars in /opt/spark/jars
#            + spark_jobs/ and contracts/ under /opt/lakehouse, run by the image's own Python
#              (3.10; spark_jobs/ keeps to 3.10, tests/unit/test_driver_python.py checks it) with
#              the driver-side packages from requirements.lock (hash-checked, wheels from the
#              package index only); pyspark is the image's own /opt/spark/python (exactly 4.1.1);
#              user spark (uid 185), never root.
#   prefect  the Prefect worker and the flow-run pods (deploy.prefect_image): Python 3.11 with
#            requirements.lock installed (hash-checked) and flows/, tasks/, lakehouse/, dbt/,
#            contracts/ under /opt/lakehouse (the deployments' working directory); uid 10001.
#
#   docker build --target spark   -t <registry>/lakehouse-spark:<tag> .
#   docker build --target prefect -t <registry>/lakehouse-prefect:<tag> .
#
# Versions: SPARK_VERSION / DELTA_VERSION / SCALA_BINARY_VERSION equal lakehouse/versions.py and
# UV_VERSION equals scripts/lib.sh (tests/deploy/test_dockerfile.py checks both).

ARG SPARK_IMAGE=apache/spark:4.1.1-scala2.13-java17-python3-ubuntu
ARG MAVEN_IMAGE=maven:3.9-eclipse-temurin-17
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- jars (build only)
# The same Maven resolution as scripts/setup.sh (jvm/spark-jars.pom.xml): Delta + the Kafka
# connector and their runtime dependencies, resolved once at build time from Maven Central.
FROM ${MAVEN_IMAGE} AS jars
ARG SPARK_VERSION=4.1.1
ARG DELTA_VERSION=4.1.0
ARG SCALA_BINARY_VERSION=2.13
WORKDIR /build
COPY jvm/spark-jars.pom.xml pom.xml
RUN mvn -q -B -f pom.xml dependency:copy-dependencies \
      -Dmaven.repo.local=/build/m2 \
      -DincludeScope=runtime \
      -Dspark.version="${SPARK_VERSION}" \
      -Ddelta.version="${DELTA_VERSION}" \
      -Dscala.binary.version="${SCALA_BINARY_VERSION}" \
      -DoutputDirectory=/build/jars \
    && rm -rf /build/m2

# --------------------------------------------------------------------------- spark
FROM ${SPARK_IMAGE} AS spark
USER 0:0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=jars /build/jars/ /tmp/extra-jars/
COPY requirements.lock /tmp/requirements.lock
# Add each resolved jar unless the Spark distribution already ships that artifact (one copy
# per library on the classpath, as lakehouse/jars.py does for the pyspark wheel).
RUN for jar in /tmp/extra-jars/*.jar; do \
      name=$(basename "$jar"); \
      artifact=$(sed -E 's/^(.*)-[0-9][^-]*\.jar$/\1/' <<<"$name"); \
      shipped=$(find /opt/spark/jars -maxdepth 1 -name "${artifact}-[0-9]*.jar" | head -n 1); \
      if [ -z "$shipped" ]; then install -m 0644 "$jar" /opt/spark/jars/; fi; \
    done \
    && rm -rf /tmp/extra-jars \
    && awk 'BEGIN { split("pydantic pydantic-core annotated-types typing-extensions typing-inspection pyyaml delta-spark", w, " "); for (i in w) want[w[i]] = 1 } \
            /^[^ #]/ { split($1, p, "=="); keep = (p[1] in want) } \
            keep && !/^ *#/' /tmp/requirements.lock > /tmp/driver-requirements.txt \
    && python3 -m pip install --no-cache-dir --no-deps --require-hashes \
         --target /opt/lakehouse/pylib -r /tmp/driver-requirements.txt \
    && rm /tmp/requirements.lock /tmp/driver-requirements.txt
COPY spark_jobs/ /opt/lakehouse/spark_jobs/
COPY contracts/ /opt/lakehouse/contracts/
ENV PYSPARK_PYTHON=/usr/bin/python3 \
    PYSPARK_DRIVER_PYTHON=/usr/bin/python3 \
    PYTHONPATH=/opt/lakehouse:/opt/lakehouse/pylib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# the official image's user: spark, uid/gid 185 (kubernetes.run_as_user)
USER 185:185
WORKDIR /opt/spark/work-dir

# --------------------------------------------------------------------------- prefect
FROM ${PYTHON_IMAGE} AS prefect
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG UV_VERSION=0.13.9
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/lakehouse \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREFECT_HOME=/tmp/prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    UV_NO_CACHE=1
RUN groupadd --system --gid 10001 lakehouse \
    && useradd --system --uid 10001 --gid lakehouse --home-dir /opt/lakehouse \
         --shell /usr/sbin/nologin lakehouse
COPY requirements.lock /tmp/requirements.lock
RUN python -m pip install --no-cache-dir "uv==${UV_VERSION}" \
    && python -m uv venv /opt/venv \
    && python -m uv pip install --python /opt/venv/bin/python --require-hashes \
         -r /tmp/requirements.lock \
    && python -m pip uninstall --yes uv \
    && rm /tmp/requirements.lock
WORKDIR /opt/lakehouse
COPY pyproject.toml ./
COPY lakehouse/ lakehouse/
COPY spark_jobs/ spark_jobs/
COPY flows/ flows/
COPY tasks/ tasks/
COPY contracts/ contracts/
COPY dbt/ dbt/
COPY deployments/ deployments/
# dbt writes its target/ and logs/ next to the project
RUN mkdir -p dbt/target dbt/logs && chown -R 10001:10001 dbt/target dbt/logs
USER 10001:10001
CMD ["prefect", "worker", "start", "--pool", "lakehouse-kubernetes", "--type", "kubernetes", "--with-healthcheck"]
