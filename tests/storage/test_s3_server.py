"""The tests' S3-compatible server really works: SeaweedFS on loopback with authentication on.

A bucket is created, an object written, read back and listed with s3fs using the server's key
pair; a wrong secret and unsigned requests are refused; every listening socket of the process is
on 127.0.0.1; stop leaves no process, no data dir and no socket file behind.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from lakehouse.testing.s3_server import S3Server, S3ServerNotInstalledError

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]


def _fs(s3: S3Server, **overrides: Any) -> Any:
    import s3fs

    return s3fs.S3FileSystem(**{**s3.storage_options(), **overrides}, skip_instance_cache=True)


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses (``ip:port``) of the TCP sockets ``pid`` listens on (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            ip_hex, port_hex = local.split(":")
            raw = bytes.fromhex(ip_hex)
            if width == 8:
                ip = ".".join(str(b) for b in reversed(raw))
            else:  # four little-endian 32-bit words
                ip = ":".join(raw[i : i + 4][::-1].hex() for i in range(0, 16, 4))
            found.add(f"{ip}:{int(port_hex, 16)}")
    return found


def test_bucket_write_read_list_with_the_server_credentials(s3_server: S3Server) -> None:
    assert s3_server.endpoint == f"http://127.0.0.1:{s3_server.port}"
    assert s3_server.region == "us-east-1"
    bucket = f"roundtrip-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    s3_server.create_bucket(bucket, exist_ok=True)

    fs = _fs(s3_server)
    payload = os.urandom(256 * 1024) + b"end"
    fs.pipe(f"{bucket}/dir/blob.bin", payload)
    fs.pipe(f"{bucket}/dir/note.txt", b"hello")
    assert fs.cat(f"{bucket}/dir/blob.bin") == payload
    assert sorted(fs.ls(f"{bucket}/dir", detail=False)) == [f"{bucket}/dir/blob.bin", f"{bucket}/dir/note.txt"]
    assert fs.info(f"{bucket}/dir/blob.bin")["size"] == len(payload)
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert bucket in names


def test_wrong_secret_and_unsigned_requests_are_refused(s3_server: S3Server) -> None:
    import botocore
    import botocore.config
    import botocore.session
    from botocore.exceptions import ClientError

    bucket = f"private-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    s3_server.client().put_object(Bucket=bucket, Key="secret.txt", Body=b"x")

    wrong = _fs(s3_server, secret=s3_server.secret_key[::-1])
    with pytest.raises(PermissionError):
        wrong.cat(f"{bucket}/secret.txt")

    session = botocore.session.get_session()
    common: dict[str, Any] = {"region_name": s3_server.region, "endpoint_url": s3_server.endpoint}
    path_style: dict[str, Any] = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}}
    bad = session.create_client(
        "s3",
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key="not-the-secret",
        config=botocore.config.Config(**path_style),
        **common,
    )
    with pytest.raises(ClientError) as refused:
        bad.list_buckets()
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    anonymous = session.create_client(
        "s3", config=botocore.config.Config(signature_version=botocore.UNSIGNED, **path_style), **common
    )
    for call in (anonymous.list_buckets, lambda: anonymous.get_object(Bucket=bucket, Key="secret.txt")):
        with pytest.raises(ClientError) as denied:
            call()
        assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_listens_on_loopback_only(s3_server: S3Server) -> None:
    assert s3_server.pid is not None
    addresses = _listening_addresses(s3_server.pid)
    assert f"127.0.0.1:{s3_server.port}" in addresses
    assert len(addresses) >= 8  # master, volume, filer, S3, admin and their gRPC ports
    assert all(a.startswith("127.0.0.1:") for a in addresses), addresses


def test_stop_leaves_no_process_data_or_sockets() -> None:
    server = S3Server()
    with server:
        pid, data_dir = server.pid, server.data_dir
        assert pid is not None and server.is_running()
        assert server.startup_seconds is not None and server.startup_seconds < 60
        assert "-master.telemetry=false" in server.argv
        server.create_bucket("stop-check")
        sockets = [
            Path(f"/tmp/seaweedfs-{name}-grpc-{server.ports[f'{name}.port.grpc']}.sock")
            for name in ("master", "volume", "filer", "s3", "admin")
        ]
        assert any(s.exists() for s in sockets)  # weed's fixed-path gRPC sockets, see stop()
    assert not server.is_running() and server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not data_dir.exists()
    assert not [s for s in sockets if s.exists()]
    server.stop()  # idempotent


def test_missing_binary_says_how_to_install(tmp_path: Path) -> None:
    server = S3Server(weed=tmp_path / "no-weed-here")
    with pytest.raises(S3ServerNotInstalledError, match=r"scripts/seaweedfs\.sh install"):
        server.start()
    assert server.pid is None
