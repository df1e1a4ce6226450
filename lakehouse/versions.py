"""Pinned versions of everything outside the Python lock file.

One place for them: the set-up script, the Spark session, the Dockerfile build arguments and the
SparkApplication templates all read these, so the JVM side cannot drift from the pinned pyspark.
"""

from __future__ import annotations

SPARK_VERSION = "4.1.1"
"""Apache Spark; equals the pinned pyspark wheel."""

SCALA_BINARY_VERSION = "2.13"
DELTA_VERSION = "4.1.0"
"""delta-spark built against SPARK_VERSION."""

KAFKA_VERSION = "4.1.1"
"""Apache Kafka broker (KRaft) used for development and tests."""

SEAWEEDFS_VERSION = "0.0.0-20261109003541-7506e5f91cd6"
"""SeaweedFS, the S3-compatible object store of the tests (lakehouse.testing.s3_server), built
from its Go module github.com/seaweedfs/seaweedfs by scripts/seaweedfs.sh. The project tags no
module versions, so this is a pseudo-version (commit 7506e5f91cd6); must equal the requirement in
tools/seaweedfs/go.mod."""

JARS_KEY = f"spark-{SPARK_VERSION}_delta-{DELTA_VERSION}_scala-{SCALA_BINARY_VERSION}"
"""Cache key of the Spark-side jar set (Delta + Kafka connector)."""

HADOOP_VERSION = "3.4.2"
"""Hadoop of the pinned pyspark wheel (its hadoop-client-api jar): hadoop-aws must equal it."""

AWS_SDK_VERSION = "2.29.52"
"""AWS SDK v2 that hadoop-aws HADOOP_VERSION is built against: its S3, S3 transfer manager and
STS modules stand in for the 600 MB SDK bundle hadoop-aws declares."""

S3_JARS_KEY = f"hadoop-aws-{HADOOP_VERSION}_awssdk-{AWS_SDK_VERSION}"
"""Cache key of the S3A jar set (hadoop-aws + AWS SDK modules): added to jobs whose storage is
s3a:// and to the images."""

KUBERNETES_VERSION = "1.37.2"
"""kube-apiserver of the test cluster, built from the k8s.io/kubernetes Go module by
scripts/k8s-tools.sh; must equal the k8s.io/kubernetes requirement in tools/k8s/go.mod."""

ETCD_VERSION = "3.7.0"
"""etcd behind the test cluster: the go.etcd.io/etcd/server/v3 version that KUBERNETES_VERSION
itself requires (tools/k8s/go.mod), so the pair is the one upstream tests together."""

SPARK_OPERATOR_VERSION = "2.5.2"
"""Kubeflow Spark operator v2 whose SparkApplication CRDs the test cluster installs, taken from
its Go module github.com/kubeflow/spark-operator/v2."""

SPARK_OPERATOR_MODULE_SUM = "h1:6nX2UhwSfnYi1mtwczgFfJTMeLSL/1ajTvkFe8R7Vdc="
"""go.sum hash of that module at SPARK_OPERATOR_VERSION; scripts/k8s-tools.sh checks it."""

K8S_TOOLS_KEY = f"kubernetes-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}"
"""Cache key of the test-cluster binaries ($LAKEHOUSE_CACHE_DIR/k8s/<key>/bin)."""

DEBIAN_SUITE = "bookworm"
"""Debian release of the images (Dockerfile BASE_IMAGE): debootstrapped locally by
scripts/images.sh when no registry is reachable, the official debian image otherwise."""

COREDNS_VERSION = "1.15.0"
"""CoreDNS of the test cluster (cluster DNS for the pods), built from its Go module by
scripts/cluster-tools.sh; must equal the requirement in tools/coredns/go.mod."""

HELM_VERSION = "3.18.5"
"""helm, only to render the operator's own chart (`helm template`): the helm.sh/helm/v3 version
the operator's go.mod requires, so both build from one module graph (tools/spark-operator)."""

PAUSE_VERSION = "3.10.2"
"""The pods' sandbox program, compiled from build/pause in the k8s.io/kubernetes module (the
TAG its Makefile gives at KUBERNETES_VERSION)."""
