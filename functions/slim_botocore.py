"""Trims botocore's data directory to the services the image calls (a build step of
functions/Dockerfile; bench/api.py measures the cold start on the same trimmed layout).

    python functions/slim_botocore.py SITE_PACKAGES

botocore ships the models of about 440 services (19 MB of files). Creating any client lists
every service directory twice (once for the service model, once for its endpoint rules) and
parses the 1.2 MB legacy ``endpoints.json``: trimmed, creating the DynamoDB client on the
API's cold path to its first job read takes about half as long (docs/PERFORMANCE.md).
The image keeps only ``KEEP_SERVICES`` and cuts ``endpoints.json`` down to their entries,
every partition kept, so endpoint resolution for those services is unchanged
(tests/infra/test_slim_botocore.py compares it with the full data).

A client for any other service fails in the image with botocore's ``UnknownServiceError``.
``alertfusion.aws.SERVICES`` lists the services the code makes clients for; a test checks
that every one of them is kept. STS stays for credential chains that assume a role.

Standard library only: it runs in the image build before the project's code is copied.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

KEEP_SERVICES = frozenset({"dynamodb", "events", "s3", "sqs", "stepfunctions", "sts", "transcribe"})


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def slim(site_packages: Path) -> dict[str, Any]:
    """Remove every service model but KEEP_SERVICES from `site_packages`/botocore/data and
    keep only their entries in endpoints.json. Idempotent. Returns what it did."""
    data = site_packages / "botocore" / "data"
    if not (data / "endpoints.json").is_file():
        raise FileNotFoundError(f"no botocore data directory at {data}")
    missing = sorted(s for s in KEEP_SERVICES if not (data / s).is_dir())
    if missing:
        raise FileNotFoundError(f"botocore at {data} has no model for {', '.join(missing)}")
    before = _tree_bytes(data)
    removed = sorted(p.name for p in data.iterdir() if p.is_dir() and p.name not in KEEP_SERVICES)
    for name in removed:
        shutil.rmtree(data / name)

    endpoints_file = data / "endpoints.json"
    endpoints = json.loads(endpoints_file.read_text("utf-8"))
    for partition in endpoints["partitions"]:
        partition["services"] = {
            # endpoints.json keys services by endpoint prefix: for these six, the service name
            name: entry
            for name, entry in partition.get("services", {}).items()
            if name in KEEP_SERVICES
        }
    endpoints_file.write_text(json.dumps(endpoints, separators=(",", ":")), "utf-8")
    return {
        "kept": sorted(KEEP_SERVICES),
        "removed_services": len(removed),
        "bytes_before": before,
        "bytes_after": _tree_bytes(data),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    report = slim(Path(args[0]))
    sys.stdout.write(
        f"botocore data: kept {', '.join(report['kept'])}; removed "
        f"{report['removed_services']} services, "
        f"{report['bytes_before'] / 1e6:.1f} MB -> {report['bytes_after'] / 1e6:.1f} MB\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
