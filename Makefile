# Lakehouse: `make demo` and `make test` work on a fresh machine with Python 3.11+, Java 17 and Maven.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
export PREFECT_HOME ?= $(CURDIR)/.lakehouse/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
PYTEST_ARGS ?=
UI_PORT ?= 4200

.PHONY: help setup demo test test-fast lint up down bench bench-phases bench-warm bench-streaming bench-storage bench-k8s kafka-up kafka-down k8s-tools cluster-tools images cluster-up cluster-down cluster-status blocks deploy ui clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## create .venv from the lock file and resolve the pinned JVM jars (cached)
	@scripts/setup.sh

demo: setup ## set-up + generate 3 days + run the medallion flow + show tables and time travel
	@$(PY) -m lakehouse.cli demo

test: setup lint k8s-tools ## set-up + lint + the whole test suite (all markers; `cluster` starts a real cluster)
	@scripts/cluster-setup.sh
	@scripts/kafka.sh install >/dev/null
	@scripts/test.sh $(PYTEST_ARGS)

up: setup ## start the warm local Spark now (local runs start it on first use anyway)
	@LAKEHOUSE_SPARK__MODE=warm $(PY) -m lakehouse.backends.warm start

down: ## stop every warm local Spark of this user
	@$(PY) -m lakehouse.backends.warm stop --all

k8s-tools: ## build kube-apiserver + etcd + kustomize from their Go modules and fetch the operator CRDs (cached)
	@scripts/k8s-tools.sh >/dev/null
	@scripts/kustomize.sh >/dev/null

cluster-tools: k8s-tools ## Debian packages, the operator/helm/CoreDNS/pause builds and the images of the test cluster (cached)
	@scripts/cluster-setup.sh
	@scripts/cluster-tools.sh >/dev/null
	@scripts/images.sh pause spark operator prefect

images: setup ## build the spark and prefect images from the Dockerfile (buildah; LAKEHOUSE_IMAGE_BUILDER=docker for Docker)
	@scripts/cluster-setup.sh
	@scripts/images.sh spark prefect

cluster-up: setup cluster-tools ## start the real single-node test cluster with the Spark operator (root; see README)
	@scripts/cluster.sh up

cluster-down: ## stop the test cluster and remove every trace of it
	@scripts/cluster.sh down

cluster-status: ## what of the test cluster runs
	@scripts/cluster.sh status

test-fast: setup ## unit tests only (no Spark, Kafka or Kubernetes)
	@$(PY) -m pytest -m "not spark and not kafka and not s3 and not k8s and not cluster and not dbt and not e2e and not contracts" $(PYTEST_ARGS)

lint: setup ## ruff check + ruff format --check + mypy (strict); part of make test
	@.venv/bin/ruff check lakehouse spark_jobs flows tasks tests bench
	@.venv/bin/ruff format --check lakehouse spark_jobs flows tasks tests bench
	@.venv/bin/mypy

bench: setup ## medallion benchmark (BENCH_EVENTS=10000000 by default) -> bench/results/medallion.json
	@$(PY) bench/medallion.py

bench-phases: setup ## where one new day over 30 days of history goes, per table and phase, from Spark's event log -> bench/results/incremental_phases.json (make bench's data)
	@$(PY) bench/incremental_phases.py

bench-warm: setup ## warm local Spark vs spark-submit on the demo data, ABAB, plus driver memory over 100 runs -> bench/results/warm_spark.json
	@$(PY) bench/warm_spark.py

bench-streaming: setup ## Kafka -> bronze Delta: ingest rate + latency p50/p99 -> bench/results/streaming.json
	@scripts/kafka.sh install >/dev/null && $(PY) bench/streaming.py

bench-storage: setup ## medallion flow and stream on local disk vs an S3 bucket (SeaweedFS on loopback), ABAB -> bench/results/storage.json
	@scripts/kafka.sh install >/dev/null && scripts/seaweedfs.sh install >/dev/null && $(PY) bench/storage.py

bench-k8s: setup cluster-tools ## on the real test cluster: SparkApplication vs spark-submit, streaming ingest vs local, flow-run pod start -> bench/results/k8s.json (BENCH_PARTS=batch,streaming,flow-run)
	@$(PY) bench/k8s.py

kafka-up: ## start the local Kafka broker (KRaft) on 127.0.0.1:9092
	@scripts/kafka.sh up

kafka-down: ## stop the local Kafka broker
	@scripts/kafka.sh down

blocks: setup ## create/update the Prefect blocks, work pools, variable and automation from the settings
	@$(PY) -m lakehouse.cli blocks

deploy: blocks ## register every deployment of deployments/prefect.yaml (prefect deploy --all)
	@.venv/bin/prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml

ui: ## the Prefect UI on the local runs' database (PREFECT_HOME=.lakehouse/prefect), http://127.0.0.1:4200 (UI_PORT)
	@.venv/bin/prefect server start --host 127.0.0.1 --port $(UI_PORT)

clean: ## remove local data (.lakehouse/); caches under ~/.cache/lakehouse stay
	rm -rf .lakehouse
