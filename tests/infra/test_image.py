"""What the image would run (no docker daemon here): the layout functions/Dockerfile's COPY
lines produce from the build context CDK staged, plus the runtime lock, must resolve every
command the Dockerfile and the stacks name; so must the zip handlers from their assets and
the layers Lambda gives them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.build_layer import (
    LAMBDA_RUNTIME_DISTRIBUTIONS,
    pinned_versions,
    powertools_layer_distributions,
)
from infra.config import LAMBDA_PYTHON_VERSION
from infra.constructs.service_image import (
    ASGI_APP,
    ASGI_PROTOCOL,
    BAKED_TARGET,
    DOCKERFILE,
    S3_TARGET,
)
from tests.conftest import FIXTURES, REPO
from tests.infra import image_layout, runtime_env
from tests.infra.conftest import CORS_ORIGIN, S3_BUNDLE, TEST_STAGE, Synth
from tests.infra.templates import flatten

pytestmark = pytest.mark.infra

REQUIREMENTS = REPO / "requirements.txt"
RUNTIME_LOCK = "locks/runtime.txt"
#: references and tooling: never in the runtime (ARCHITECTURE.md, common standards)
FORBIDDEN_AT_RUNTIME = {"torch", "librosa", "scipy", "skimage", "numba", "moto", "model_export"}
FORBIDDEN_DISTRIBUTIONS = {"torch", "librosa", "scipy", "scikit-image", "numba", "moto"}
#: the engine's dependencies: imported on the first classifying request, never at start-up
#: by the API (functions/api/app.py) or the zip functions
HEAVY_AT_IMPORT = {"numpy", "onnxruntime", "av", "soundfile", "tokenizers"}


def _image_sources(synth: Synth) -> list[dict[str, Any]]:
    """Every container image the stacks use, with the command each function runs."""
    found = []
    for component, template in synth.templates.items():
        for logical_id, resource in template["Resources"].items():
            props = resource["Properties"]
            if resource["Type"] != "AWS::Lambda::Function" or "ImageUri" not in props["Code"]:
                continue
            image_hash = props["Code"]["ImageUri"]["Fn::Sub"].rsplit(":", 1)[-1]
            found.append(
                {
                    "component": component,
                    "function": logical_id,
                    "command": props["ImageConfig"]["Command"],
                    "hash": image_hash,
                    "environment": props.get("Environment", {}).get("Variables", {}),
                }
            )
    return found


def _placeholder_env(variables: dict[str, Any]) -> dict[str, str]:
    """Lambda's environment as the template sets it; references become placeholders."""
    return {
        key: value if isinstance(value, str) else f"placeholder-{key.lower().replace('_', '-')}"
        for key, value in variables.items()
    }


def _map_paths(env: dict[str, str], root: Path, tmp: Path) -> dict[str, str]:
    """Image paths → the reconstructed layout (/var/task) and a writable stand-in for /tmp."""
    mapped = {}
    for key, value in env.items():
        if value.startswith("/var/task"):
            value = str(root) + value
        elif value == "/tmp" or value.startswith("/tmp/"):
            value = str(tmp) + value[len("/tmp") :]
        mapped[key] = value
    return mapped


def _snapshot(*dirs: Path) -> set[tuple[str, int]]:
    return {
        (str(p), p.stat().st_mtime_ns) for d in dirs for p in d.rglob("*") if not p.is_symlink()
    }


@pytest.fixture(scope="module")
def image(synth: Synth, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The classifier image's spec and its reconstructed filesystem."""
    sources = _image_sources(synth)
    hashes = {s["hash"] for s in sources}
    assert len(hashes) == 1, f"the functions must share one image, got {hashes}"
    image_hash = hashes.pop()
    source = synth.asset_source("pipeline", image_hash)
    context = synth.outdir / source["directory"]
    spec = image_layout.resolve(
        image_layout.parse((context / source["dockerFile"]).read_text()),
        target=source.get("dockerBuildTarget"),
        build_args=source.get("dockerBuildArgs", {}),
    )
    base = tmp_path_factory.mktemp("image")
    root = base / "root"
    copied = image_layout.materialize(spec, context, root)
    site = runtime_env.link_site(
        runtime_env.requirement_names(context / RUNTIME_LOCK), base / "site-packages"
    )
    # the pip step's botocore trim (test_botocore_keeps_every_service_the_code_calls checks
    # the Dockerfile runs it)
    slimmed = runtime_env.slim_botocore(site, context / "functions" / "slim_botocore.py")
    home = base / "home"
    home.mkdir()
    tmp = base / "tmp"
    tmp.mkdir()
    return {
        "spec": spec,
        "source": source,
        "context": context,
        "root": root,
        "copied": copied,
        "site": site,
        "home": home,
        "tmp": tmp,
        "functions": sources,
        "slimmed": slimmed,
    }


def _image_env(image: dict[str, Any], lambda_env: dict[str, str]) -> dict[str, str]:
    env = _map_paths({**image["spec"].env, **lambda_env}, image["root"], image["tmp"])
    # Stricter than the image (HOME=/tmp): nothing may write to HOME at import either.
    env["HOME"] = str(image["home"])
    env.update(
        AWS_REGION="ap-northeast-2",
        AWS_DEFAULT_REGION="ap-northeast-2",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        POWERTOOLS_TRACE_DISABLED="1",
    )
    return env


def _task_root(image: dict[str, Any]) -> Path:
    return Path(image["root"]) / image["spec"].env["LAMBDA_TASK_ROOT"].lstrip("/")


def _probe_image(
    image: dict[str, Any], targets: list[str], lambda_env: dict[str, str]
) -> tuple[dict[str, dict], Path]:
    env = _image_env(image, lambda_env)
    task_root = _task_root(image)
    before = _snapshot(image["root"], image["home"])
    results = runtime_env.probe(
        targets, pythonpath=[task_root, image["site"]], env=env, cwd=image["home"]
    )
    assert _snapshot(image["root"], image["home"]) == before, "importing wrote outside /tmp"
    return results, task_root


def _assert_resolved(results: dict[str, Any], targets: list[str], task_root: Path) -> None:
    failures = {t: r for t, r in results.items() if t in targets and not r.get("ok")}
    assert not failures, "entry points that would not start:\n" + json.dumps(failures, indent=2)
    for target in targets:
        assert str(results[target]["file"]).startswith(str(task_root)), (
            f"{target} was imported from {results[target]['file']}, not from the image"
        )
    leaked = FORBIDDEN_AT_RUNTIME & set(results["__modules__"])
    assert not leaked, f"the runtime imported {sorted(leaked)}"


# ---- the Dockerfile itself -------------------------------------------------------------


def test_base_image_is_the_lambda_python_of_the_stacks_for_the_functions_platform(
    image: dict[str, Any],
) -> None:
    """The Python the zip functions and `make image-deps` assume; the platform the CDK asset
    builds for is the one the FROM line pulls (a build argument, never the build machine's).
    The digest is optional here only until the first build fills it (see the Dockerfile)."""
    spec = image["spec"]
    assert spec.base_platform == image["source"]["platform"] == "linux/amd64"
    assert image["source"]["dockerBuildArgs"]["PLATFORM"] == "linux/amd64"
    version = re.escape(LAMBDA_PYTHON_VERSION)
    assert re.fullmatch(
        rf"public\.ecr\.aws/lambda/python:{version}(\.[0-9.]+)?(@sha256:[0-9a-f]{{64}})?",
        spec.base_image,
    ), spec.base_image


def test_the_platform_argument_defaults_to_what_lambda_runs_by_default() -> None:
    """A plain `docker build` (no build argument) still gives the x86_64 image."""
    spec = image_layout.resolve(
        image_layout.parse((REPO / DOCKERFILE).read_text()), target=BAKED_TARGET, build_args={}
    )
    assert spec.base_platform == "linux/amd64"


def test_runtime_installs_only_the_lock_without_resolution(image: dict[str, Any]) -> None:
    (pip_run,) = [run for run in image["spec"].runs if "pip install" in run]
    assert "--no-deps" in pip_run and "--only-binary=:all:" in pip_run
    assert "--require-hashes" in pip_run
    assert f"--mount=type=bind,source={RUNTIME_LOCK},target=/build/runtime.txt" in pip_run
    assert "-r /build/runtime.txt" in pip_run
    # the lock is requirements.txt with hashes: the same distributions at the same versions
    assert pinned_versions(image["context"] / RUNTIME_LOCK) == pinned_versions(REQUIREMENTS)
    names = set(runtime_env.requirement_names(REQUIREMENTS))
    assert not names & FORBIDDEN_DISTRIBUTIONS
    assert {"onnxruntime", "mangum", "uvicorn", "fastapi"} <= names


def test_bytecode_is_compiled_at_build_time_and_never_at_run_time(image: dict[str, Any]) -> None:
    spec = image["spec"]
    assert spec.env["PYTHONDONTWRITEBYTECODE"] == "1"
    compiled = " ".join(run for run in spec.runs if "compileall" in run)
    for path in ("${LAMBDA_TASK_ROOT}/alertfusion", "${LAMBDA_TASK_ROOT}/functions"):
        assert path in compiled


def test_botocore_keeps_every_service_the_code_calls(image: dict[str, Any]) -> None:
    """The pip step trims botocore's data, in the same layer, before compiling; what is
    left holds the model of every service alertfusion.aws makes clients for."""
    from alertfusion import aws

    (pip_run,) = [run for run in image["spec"].runs if "pip install" in run]
    assert "--mount=type=bind,source=functions/slim_botocore.py," in pip_run
    trim = 'python /build/slim_botocore.py "${LAMBDA_TASK_ROOT}"'
    assert pip_run.index("pip install") < pip_run.index(trim) < pip_run.index("compileall")
    data = image["site"] / "botocore" / "data"
    kept = {p.name for p in data.iterdir() if p.is_dir()}
    assert set(aws.SERVICES) <= kept == set(image["slimmed"]["kept"])
    assert image["slimmed"]["bytes_after"] < image["slimmed"]["bytes_before"] / 5


def test_every_writable_path_is_under_tmp(image: dict[str, Any]) -> None:
    env = image["spec"].env
    assert "NUMBA_CACHE_DIR" not in env  # numba is not in the runtime
    for key in ("HOME", "XDG_CACHE_HOME", "BUNDLE_CACHE_DIR"):
        assert env[key] == "/tmp" or env[key].startswith("/tmp/"), key


def test_bundle_is_copied_last_and_named_by_model_bundle(image: dict[str, Any]) -> None:
    spec = image["spec"]
    assert image["source"]["dockerBuildTarget"] == BAKED_TARGET
    last_layer = [k for k in spec.sequence if k in ("COPY", "RUN", "ADD")][-1]
    assert last_layer == "COPY"
    bundle_copy = spec.copies[-1]
    assert bundle_copy.sources == [image["source"]["dockerBuildArgs"]["BUNDLE_DIR"] + "/"]
    assert spec.env["MODEL_BUNDLE"] == bundle_copy.dest.rstrip("/")
    assert (image["copied"][-1] / "manifest.json").is_file()


def test_build_context_holds_only_what_the_image_copies(image: dict[str, Any]) -> None:
    context: Path = image["context"]
    top = {p.name for p in context.iterdir()}
    assert top == {".dockerignore", "locks", "layers", "functions", "build"}
    assert {p.name for p in (context / "locks").iterdir()} == {"runtime.txt"}
    staged = {p.relative_to(context).as_posix() for p in context.rglob("*")}
    for unwanted in ("tests", ".venv", "node_modules", "cdk.out", ".git", "devstack"):
        assert not any(s == unwanted or s.startswith(unwanted + "/") for s in staged), unwanted
    assert not any("__pycache__" in s or s.endswith(".pyc") for s in staged)
    bundles = {p.name for p in (context / "build" / "models").iterdir()}
    assert bundles == {Path(image["source"]["dockerBuildArgs"]["BUNDLE_DIR"]).name}


def test_no_dependency_shadows_the_task_roots_packages(image: dict[str, Any]) -> None:
    """pip installs into the task root: a dependency with a top-level `functions`,
    `alertfusion` or `model` would collide with the code or the bundle."""
    for name in runtime_env.requirement_names(REQUIREMENTS):
        clash = runtime_env.top_levels(name) & {"functions", "alertfusion", "model"}
        assert not clash, f"{name} installs {clash}"


# ---- entry points ----------------------------------------------------------------------


def test_dockerfile_default_command_resolves(image: dict[str, Any]) -> None:
    targets = list(image["spec"].cmd)
    assert targets == ["functions.classifier.app.handler"]
    results, task_root = _probe_image(image, targets, {})
    _assert_resolved(results, targets, task_root)


@pytest.mark.parametrize("component", ["pipeline", "api"])
def test_each_image_function_command_resolves_with_its_environment(
    image: dict[str, Any], component: str
) -> None:
    functions = [f for f in image["functions"] if f["component"] == component]
    assert functions
    for function in functions:
        targets = list(function["command"])
        results, task_root = _probe_image(image, targets, _placeholder_env(function["environment"]))
        _assert_resolved(results, targets, task_root)
        if component == "api":
            # /healthz and the page must not wait for the engine: importing stays light
            leaked = HEAVY_AT_IMPORT & set(results["__modules__"])
            assert not leaked, f"the API imports {sorted(leaked)} at start-up"


def _rest_event(method: str, path: str, resource: str, headers: dict[str, str]) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for `path` under the test stage, no body."""
    event = json.loads((FIXTURES / "events" / "apigw-rest-predict-multipart.json").read_text())
    all_headers = {"Host": event["headers"]["Host"], "X-Forwarded-Proto": "https", **headers}
    proxy = path.lstrip("/") if resource == "/{proxy+}" else None
    event.update(
        resource=resource,
        path=path,
        httpMethod=method,
        headers=all_headers,
        multiValueHeaders={k: [v] for k, v in all_headers.items()},
        pathParameters={"proxy": proxy} if proxy else None,
        body=None,
        isBase64Encoded=False,
    )
    context = event["requestContext"]
    context.update(
        resourcePath=resource,
        httpMethod=method,
        path=f"/{TEST_STAGE}{path}",
        stage=TEST_STAGE,
        identity={"sourceIp": "203.0.113.24", "userAgent": "probe"},
    )
    return dict(event)


def _header(response: dict[str, Any], name: str) -> str:
    """A header of Mangum's REST response (single values in `headers`, repeated ones in
    `multiValueHeaders`)."""
    if name in (response.get("headers") or {}):
        return str(response["headers"][name])
    (value,) = response["multiValueHeaders"][name]
    return str(value)


def test_api_function_serves_the_page_probes_and_preflight_from_the_image(
    image: dict[str, Any],
) -> None:
    """The key-free routes, through the handler the stack names, in the image's layout with
    the function's environment: the page and its assets are in the image, the CORS origin
    the stack sets reaches the app, and nothing loads the engine or writes outside /tmp."""
    (function,) = [f for f in image["functions"] if f["component"] == "api"]
    (target,) = function["command"]
    env = _image_env(image, _placeholder_env(function["environment"]))
    events = [
        _rest_event("GET", "/", "/", {"Accept": "text/html"}),
        _rest_event("GET", "/static/app.js", "/static/{name}", {}),
        _rest_event("GET", "/healthz", "/healthz", {}),
        _rest_event(
            "OPTIONS",
            "/predict",
            "/{proxy+}",
            {
                "Origin": CORS_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type",
            },
        ),
    ]
    before = _snapshot(image["root"], image["home"])
    result = runtime_env.invoke(
        target, events, pythonpath=[_task_root(image), image["site"]], env=env, cwd=image["home"]
    )
    assert _snapshot(image["root"], image["home"]) == before, "serving wrote outside /tmp"
    page, script, health, preflight = result["responses"]
    statuses = [r["statusCode"] for r in result["responses"]]
    assert statuses == [200, 200, 200, 200], result["responses"]
    assert _header(page, "content-type").startswith("text/html")
    assert f'<base href="/{TEST_STAGE}/">' in page["body"]  # assets resolve under the stage
    assert _header(script, "content-type").startswith("text/javascript")
    assert json.loads(health["body"])["status"] == "ok"
    assert _header(preflight, "access-control-allow-origin") == CORS_ORIGIN
    leaked = (HEAVY_AT_IMPORT | FORBIDDEN_AT_RUNTIME) & set(result["__modules__"])
    assert not leaked, f"the key-free routes imported {sorted(leaked)}"


def test_fallback_runs_uvicorn_on_the_asgi_app_in_the_same_image(
    synth: Synth, image: dict[str, Any]
) -> None:
    (instance,) = synth.resources("fallback", "AWS::EC2::Instance").values()
    user_data = flatten(instance["Properties"]["UserData"])
    match = re.search(r"--entrypoint (\S+) \S+ -m uvicorn (\S+)", user_data)
    assert match, user_data
    assert match.group(1) == "python"
    assert match.group(2) == ASGI_APP
    (fallback_image,) = synth.assets["fallback"]["dockerImages"]
    assert fallback_image in synth.assets["pipeline"]["dockerImages"], (
        "the fallback must pull the very image the functions run"
    )
    protocol = re.search(r"--http (\S+)", user_data)
    assert protocol and protocol.group(1) == ASGI_PROTOCOL
    targets = ["uvicorn.main", match.group(2), protocol.group(1)]
    results, task_root = _probe_image(image, targets, {})
    assert results["uvicorn.main"]["ok"], results["uvicorn.main"]
    _assert_resolved(results, [match.group(2), protocol.group(1)], task_root)


def test_zip_handlers_resolve_from_their_asset_and_the_layers(synth: Synth, tmp_path: Path) -> None:
    """Lambda puts the asset in /var/task and the layers' python/ on the path; the runtime
    brings boto3 and AWS's Powertools layer the rest. Nothing else is importable here."""
    site = runtime_env.link_site(
        sorted(
            name
            for name in powertools_layer_distributions() | LAMBDA_RUNTIME_DISTRIBUTIONS
            if _installed(name)
        ),
        tmp_path / "runtime-and-powertools",
    )
    resources = synth.templates["pipeline"]["Resources"]
    zips = {
        lid: r
        for lid, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("Runtime", "") == f"python{LAMBDA_PYTHON_VERSION}"
    }
    assert len(zips) == 3, sorted(zips)  # starter, sweeper, backfill
    home = tmp_path / "home"
    home.mkdir()
    for logical_id, resource in zips.items():
        props = resource["Properties"]
        code_dir = synth.asset_dir("pipeline", props["Code"]["S3Key"].removesuffix(".zip"))
        layer_dirs = []
        for layer in props["Layers"]:
            if isinstance(layer, dict) and "Ref" in layer and layer["Ref"] in resources:
                content = resources[layer["Ref"]]["Properties"]["Content"]
                layer_dirs.append(
                    synth.asset_dir("pipeline", content["S3Key"].removesuffix(".zip")) / "python"
                )
        assert len(layer_dirs) == 1, f"{logical_id}: expected the core layer"
        module, attr = props["Handler"].rsplit(".", 1)
        target = f"{module}.{attr}"
        env = _placeholder_env(props["Environment"]["Variables"])
        env.update(HOME=str(home), AWS_REGION="ap-northeast-2", POWERTOOLS_TRACE_DISABLED="1")
        results = runtime_env.probe(
            [target], pythonpath=[code_dir, *layer_dirs, site], env=env, cwd=home
        )
        assert results[target].get("ok"), f"{logical_id}: {results[target]}"
        assert str(results[target]["file"]).startswith(str(code_dir))
        heavy = HEAVY_AT_IMPORT | FORBIDDEN_AT_RUNTIME
        assert not heavy & set(results["__modules__"]), f"{logical_id} imports heavy modules"


def _installed(name: str) -> bool:
    import importlib.metadata as md

    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
def test_s3_bundle_image_bakes_no_bundle_and_points_at_s3(synth_s3_bundle: Synth) -> None:
    (image_hash,) = synth_s3_bundle.assets["pipeline"]["dockerImages"]
    source = synth_s3_bundle.asset_source("pipeline", image_hash)
    assert source["dockerBuildTarget"] == S3_TARGET
    context = synth_s3_bundle.outdir / source["directory"]
    spec = image_layout.resolve(
        image_layout.parse((context / DOCKERFILE).read_text()),
        target=S3_TARGET,
        build_args=source["dockerBuildArgs"],
    )
    assert spec.env["MODEL_BUNDLE"] == S3_BUNDLE
    assert not any("model" in c.dest for c in spec.copies)
    assert not (context / "build").exists()
