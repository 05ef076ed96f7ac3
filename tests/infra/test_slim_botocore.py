"""functions/slim_botocore.py, the image's botocore trim: the services it keeps resolve and
sign exactly as with the full data, the others are gone, and it is idempotent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore
import pytest

from functions import slim_botocore
from tests.conftest import REPO

pytestmark = pytest.mark.infra

REGIONS = ("ap-northeast-2", "us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1")

#: what a client of each kept service resolves to, in each region; run by a fresh interpreter
#: so the botocore on its path (full or trimmed) is the one that answers
RESOLVE = r"""
import json, sys
import botocore.session
from botocore.config import Config
from botocore.exceptions import UnknownServiceError

services, regions, removed = json.loads(sys.argv[1])
session = botocore.session.Session()
out = {"botocore": botocore.__file__, "clients": {}}
for service in services:
    for region in regions:
        client = session.create_client(service, region_name=region)
        entry = {"endpoint": client.meta.endpoint_url, "region": client.meta.region_name}
        if service == "s3":
            url = client.generate_presigned_url(
                "get_object", Params={"Bucket": "alertfusion-audio", "Key": "uploads/a.wav"}
            )
            entry["presigned"] = url.split("?", 1)[0]
        out["clients"][f"{service}@{region}"] = entry
out["regions"] = session.get_available_regions("dynamodb")
try:
    session.create_client(removed, region_name=regions[0])
    out["removed"] = "created"
except UnknownServiceError:
    out["removed"] = "UnknownServiceError"
print(json.dumps(out))
"""


def _resolve(pythonpath: Path | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    else:
        env.pop("PYTHONPATH", None)
    args = json.dumps([sorted(slim_botocore.KEEP_SERVICES), REGIONS, "lambda"])
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE, args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    site = tmp_path_factory.mktemp("slim-site")
    shutil.copytree(Path(botocore.__file__).parent, site / "botocore")
    return site, slim_botocore.slim(site)


def test_kept_services_resolve_and_sign_as_with_the_full_data(
    trimmed: tuple[Path, dict[str, Any]],
) -> None:
    site, _report = trimmed
    full = _resolve(None)
    slim = _resolve(site)
    assert slim["botocore"].startswith(str(site)) and not full["botocore"].startswith(str(site))
    assert slim["clients"] == full["clients"]
    assert slim["regions"] == full["regions"]
    assert full["removed"] == "created" and slim["removed"] == "UnknownServiceError"


def test_trim_keeps_the_code_s_services_and_is_idempotent(
    trimmed: tuple[Path, dict[str, Any]],
) -> None:
    from alertfusion import aws

    site, report = trimmed
    data = site / "botocore" / "data"
    assert set(aws.SERVICES) <= slim_botocore.KEEP_SERVICES
    assert {p.name for p in data.iterdir() if p.is_dir()} == slim_botocore.KEEP_SERVICES
    assert report["removed_services"] > 100
    assert report["bytes_after"] < report["bytes_before"] / 5
    endpoints = json.loads((data / "endpoints.json").read_text("utf-8"))
    for partition in endpoints["partitions"]:
        assert set(partition["services"]) <= slim_botocore.KEEP_SERVICES
    assert "s3" in endpoints["partitions"][0]["services"]
    again = slim_botocore.slim(site)
    assert again["removed_services"] == 0 and again["bytes_after"] == report["bytes_after"]


def test_trim_refuses_a_directory_without_botocore_data(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        slim_botocore.slim(tmp_path)
    assert slim_botocore.main([]) == 2


def test_client_refuses_a_service_the_image_does_not_ship() -> None:
    from alertfusion import aws

    with pytest.raises(ValueError, match="SERVICES"):
        aws.client("lambda")
