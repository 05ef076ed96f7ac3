"""moto's state-machine interpreter for the backfill, and what it lacks, filled in here.

moto 5.2.5 executes state machines when its ``stepfunctions.execute_state_machine``
configuration is on (the local stack turns it on through moto's documented
``/moto-api/config``): a port of an ASL interpreter with Distributed Map, S3 item readers,
ResultWriter and the Lambda, SQS and DynamoDB service integrations, whose clients call the
moto server on ``MOTO_PORT``. The backfill's definition (alertfusion.backfill.definition)
runs there unchanged but for what moto does not know, each gap filled here and only here:

* **Lambda**: moto's Lambda would run functions in Docker. :class:`LambdaInvokeGap` answers
  ``Invoke`` of the backfill function on the wire by running its real handler in this
  process (devstack.handlers), with Lambda's error shape (``X-Amz-Function-Error``,
  ``errorType``) when it raises, so the definition's ``Retry`` sees ``TransientError``.
* **ItemBatcher**: moto's ASL grammar has no ``ItemBatcher`` and refuses a definition that
  holds one. :func:`prepare_definition` takes it out of the text moto parses, and the
  Distributed Map hook batches as AWS does: the ItemSelector applied to each item, then
  ``{"Items": [...], "BatchInput": {...}}`` per child, ``MaxItemsPerBatch`` items each
  (``BatchInput`` paths of the form ``$.a.b`` resolved against the map's input).
* **ToleratedFailurePercentage**: moto counts failed children but never fails the map. The
  hook fails it with ``States.ExceedToleratedFailureThreshold`` when the failed share of
  child workflows is above the percentage, as AWS does.
* **S3 item reader**: moto's ``ListObjectsV2`` reader reads one page (1,000 keys) and hands
  boto3's item shape (``ETag``, a datetime ``LastModified``) and fails on an empty prefix;
  the hook reads every page and gives AWS's shape (``Etag``, epoch ``LastModified``,
  ``Key``, ``Size``, ``StorageClass``).
* **Redrive**: moto has no ``RedriveExecution``. :class:`RedriveGap` answers it by running
  the FAILED execution again in place, and the map hook then skips the child batches that
  succeeded before (reusing their outputs): what AWS's redrive of a Map Run does.
* **Clients**: moto's interpreter makes a boto3 client for every Lambda invocation and
  every SQS message its tasks send (milliseconds of CPU each, hundreds per backfill, in the
  server's process); the hook keeps one per region and service, as a Lambda function or an
  SDK integration keeps its client (boto3 clients are thread-safe). Dropped when the local
  stack stops.
* **ResultWriter**: moto writes only ``manifest.json`` with empty result lists under the
  prefix. Left as it is: the backfill's results are the batch files its own check step
  writes (``backfills/{id}/batches/``), which summaries and ``GET /backfills`` read.

Every reach into moto's internals is in :func:`install_interpreter_hooks` and
:class:`RedriveGap`, written against moto 5.2.5 (devstack.moto_hooks.MOTO_VERSION).
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from devstack.moto_hooks import MOTO_ACCOUNT_ID, WSGIApp

#: Lambda's Invoke path (the function name may be an ARN, URL-encoded)
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


@dataclass(frozen=True)
class Batcher:
    """An ItemBatcher taken out of a definition: what the map hook does instead."""

    max_items: int
    batch_input: dict[str, Any]


#: map state name → its ItemBatcher (the local stack has one state machine)
_BATCHERS: dict[str, Batcher] = {}
#: execution ARN → first item key of each batch that succeeded → that child's output
_SUCCEEDED: dict[str, dict[str, Any]] = {}
_state_lock = threading.Lock()
_installed: dict[str, Any] = {}
#: (region, service, moto's port) → the interpreter's boto3 client
_CLIENTS: dict[tuple[str, str, str | None], Any] = {}


def prepare_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition moto can parse: every ItemBatcher removed (and registered for the
    map hook); the rest unchanged."""
    out = copy.deepcopy(definition)

    def walk(states: dict[str, Any]) -> None:
        for name, state in states.items():
            batcher = state.pop("ItemBatcher", None)
            if batcher is not None:
                with _state_lock:
                    _BATCHERS[name] = Batcher(
                        int(batcher["MaxItemsPerBatch"]), dict(batcher.get("BatchInput", {}))
                    )
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                walk(processor["States"])

    walk(out["States"])
    return out


def enable_interpreter(moto_url: str, enabled: bool = True) -> None:
    """Turn moto's interpreter on, or back off (documented: ``POST /moto-api/config``). The
    setting is process-wide in moto and its reset leaves it alone: whoever turns it on turns
    it off, or later in-process ``mock_aws`` users would get an interpreter that refuses
    definitions it cannot parse."""
    import urllib.request

    request = urllib.request.Request(
        f"{moto_url}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": enabled}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as answer:
        answer.read()


def _resolve(template: dict[str, Any], document: Any) -> dict[str, Any]:
    """A BatchInput with its ``"key.$": "$.a.b"`` fields resolved against `document`."""
    out: dict[str, Any] = {}
    for key, value in template.items():
        if key.endswith(".$"):
            if not isinstance(value, str) or not re.fullmatch(r"\$(\.[A-Za-z0-9_]+)*", value):
                raise ValueError(f"BatchInput path {value!r}: the local stack resolves $.a.b only")
            found = document
            for part in value.split(".")[1:]:
                found = found.get(part) if isinstance(found, dict) else None
            out[key[:-2]] = found
        else:
            out[key] = value
    return out


def install_interpreter_hooks() -> None:
    """Patch moto's Distributed Map and S3 item reader (see the module docstring). Private
    hooks (moto 5.2.5): ``DistributedIterationComponent._map_run`` (the item list on
    ``env.stack``, the map's input under it, ``_launch_worker``, ``JobPool``), the worker's
    ItemSelector evaluation (``MapData``/``ItemData`` in the context object),
    ``ResourceEvalS3._handle_list_objects_v2`` of the item reader, and ``boto_client_for`` as
    the Lambda and SQS tasks' modules import it (``lambda_eval_utils``,
    ``state_task_service_sqs``)."""
    if _installed:
        return
    import logging

    # moto's parser warns that it ignores ToleratedFailurePercentage: the hook enforces it
    logging.getLogger("moto.stepfunctions.parser.asl.parse.preprocessor").setLevel(logging.ERROR)
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (  # noqa: E501
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (
        resource_eval_s3 as reader_s3,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as dic,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.job import (
        JobPool,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sqs,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData

    component = dic.DistributedIterationComponent
    original_map_run = component._map_run
    original_list = reader_s3.ResourceEvalS3._handle_list_objects_v2

    def list_all_pages(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        s3 = reader_s3.ResourceEvalS3._get_s3_client(
            resource_runtime_part=resource_runtime_part, state_credentials=state_credentials
        )
        parameters = dict(env.stack.pop())
        items: list[dict[str, Any]] = []
        while True:
            page = s3.list_objects_v2(**parameters)
            for entry in page.get("Contents", []):
                items.append(
                    {
                        "Etag": entry["ETag"],
                        "Key": entry["Key"],
                        "LastModified": int(entry["LastModified"].timestamp()),
                        "Size": entry["Size"],
                        "StorageClass": entry.get("StorageClass", "STANDARD"),
                    }
                )
            if not page.get("IsTruncated"):
                break
            parameters["ContinuationToken"] = page["NextContinuationToken"]
        env.stack.append(items)

    def batched_map_run(self: Any, env: Any, eval_input: Any) -> None:
        batcher = _BATCHERS.get(eval_input.state_name)
        if batcher is None:
            original_map_run(self, env, eval_input)
            return
        raw_items: list[Any] = env.stack.pop()
        map_input = env.stack[-1]
        selected = []
        for index, item in enumerate(raw_items):
            value = item
            if eval_input.item_selector is not None:
                frame = env.open_inner_frame()
                frame.states.context_object.context_object_data["Map"] = MapData(
                    Item=ItemData(Index=index, Value=item)
                )
                frame.states.reset(input_value=map_input)
                frame.stack.append(map_input)
                eval_input.item_selector.eval(frame)
                value = frame.stack.pop()
                env.delete_frame(frame)
            selected.append(value)
        batch_input = _resolve(batcher.batch_input, map_input)
        batches = [
            {"Items": selected[i : i + batcher.max_items], "BatchInput": batch_input}
            for i in range(0, len(selected), batcher.max_items)
        ]
        execution = env.states.context_object.context_object_data["Execution"]["Id"]
        with _state_lock:
            before = dict(_SUCCEEDED.get(execution, {}))

        def first_key(batch: dict[str, Any]) -> str:
            return json.dumps(batch["Items"][0], sort_keys=True)

        todo = [b for b in batches if first_key(b) not in before]
        workers_input = dic.DistributedIterationComponentEvalInput(
            state_name=eval_input.state_name,
            max_concurrency=eval_input.max_concurrency,
            input_items=todo,
            parameters=None,
            item_selector=None,
            item_reader=eval_input.item_reader,
            tolerated_failure_count=eval_input.tolerated_failure_count,
            tolerated_failure_percentage=eval_input.tolerated_failure_percentage,
            label=eval_input.label,
            map_run_record=eval_input.map_run_record,
        )
        outputs: dict[str, Any] = {}
        if todo:
            pool = JobPool(job_program=self._get_iteration_program(), job_inputs=todo)
            limit = eval_input.map_run_record.max_concurrency
            for _ in range(min(len(todo), limit) if limit else len(todo)):
                self._launch_worker(env=env, eval_input=workers_input, job_pool=pool)
            pool.await_jobs()
            problem = pool.get_worker_exception()
            if problem is not None:
                raise problem
            for closed in pool.get_closed_jobs():
                outputs[first_key(todo[closed.job_index])] = closed.job_output
        failed = [key for key, out in outputs.items() if out is None]
        with _state_lock:
            done = _SUCCEEDED.setdefault(execution, {})
            done.update({k: v for k, v in outputs.items() if v is not None})
        tolerated = float(eval_input.tolerated_failure_percentage or 0)
        if batches and len(failed) * 100.0 / len(batches) > tolerated:
            cause = (
                f"{len(failed)} of {len(batches)} child workflows failed, more than the "
                f"tolerated {tolerated:g} % (local stack: moto does not check the threshold)"
            )
            raise FailureEventException(
                failure_event=FailureEvent(
                    env=env,
                    error_name=StatesErrorName(
                        typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold
                    ),
                    event_type=HistoryEventType.MapRunFailed,
                    event_details=EventDetails(  # type: ignore[typeddict-item]
                        executionFailedEventDetails=ExecutionFailedEventDetails(
                            error="States.ExceedToleratedFailureThreshold", cause=cause
                        )
                    ),
                )
            )
        merged = {**before, **outputs}
        env.stack.append([merged.get(first_key(b)) for b in batches])

    original_client_for = lambda_eval_utils.boto_client_for

    def kept_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        # moto's own ignores state_credentials too: every client is the server's fake user
        key = (region, service, os.environ.get("MOTO_PORT"))
        with _state_lock:
            found = _CLIENTS.get(key)
        if found is None:
            found = original_client_for(region, service, state_credentials)
            with _state_lock:
                found = _CLIENTS.setdefault(key, found)
        return found

    setattr(component, "_map_run", batched_map_run)  # noqa: B010 (a patch of moto's class)
    setattr(  # noqa: B010
        reader_s3.ResourceEvalS3, "_handle_list_objects_v2", staticmethod(list_all_pages)
    )
    for module in (lambda_eval_utils, state_task_service_sqs):
        setattr(module, "boto_client_for", kept_client_for)  # noqa: B010
    _installed.update(
        map_run=original_map_run, list_objects=original_list, client_for=original_client_for
    )


def remove_interpreter_hooks() -> None:
    if not _installed:
        return
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (
        resource_eval_s3 as reader_s3,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as dic,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sqs,
    )

    setattr(dic.DistributedIterationComponent, "_map_run", _installed["map_run"])  # noqa: B010
    setattr(  # noqa: B010
        reader_s3.ResourceEvalS3,
        "_handle_list_objects_v2",
        staticmethod(_installed["list_objects"]),
    )
    for module in (lambda_eval_utils, state_task_service_sqs):
        setattr(module, "boto_client_for", _installed["client_for"])  # noqa: B010
    _installed.clear()
    with _state_lock:
        _BATCHERS.clear()
        _SUCCEEDED.clear()
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:  # their keep-alive connections hold the server's request threads
        client.close()


class LambdaInvokeGap:
    """WSGI middleware: Lambda ``Invoke`` of the functions the stack runs itself answered by
    `invoke(name, event) -> (response, error)`: ``error`` is ``(type name, message)`` when
    the handler raised. Other functions go to moto."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        functions: Iterable[str],
        invoke: Callable[[str, dict[str, Any]], tuple[Any, tuple[str, str] | None]],
    ) -> None:
        self._app = app
        self._functions = set(functions)
        self._invoke = invoke

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        from urllib.parse import unquote

        match = _INVOKE_PATH.match(environ.get("PATH_INFO", ""))
        name = unquote(match.group("name")).rsplit(":", 1)[-1] if match else None
        if name is None or name not in self._functions or environ["REQUEST_METHOD"] != "POST":
            return self._app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b"{}"
        response, error = self._invoke(name, json.loads(body or b"{}"))
        headers = [("Content-Type", "application/json"), ("X-Amz-Executed-Version", "$LATEST")]
        if error is not None:
            payload = json.dumps({"errorType": error[0], "errorMessage": error[1]}).encode()
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        else:
            payload = json.dumps(response).encode()
        headers.append(("Content-Length", str(len(payload))))
        start_response("200 OK", headers)
        return [payload]


def _json_headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))]


class RedriveGap:
    """WSGI middleware: ``RedriveExecution`` (moto has none). A FAILED, TIMED_OUT or ABORTED
    execution runs again in place; its Distributed Map skips the batches that succeeded
    (see the module docstring). Private hook (moto 5.2.5): the parser backend's
    ``state_machines[...].executions`` and ``Execution.start()``."""

    def __init__(self, app: WSGIApp, *, region: str) -> None:
        self._app = app
        self._region = region

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") != "AWSStepFunctions.RedriveExecution":
            return self._app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        arn = json.loads(environ["wsgi.input"].read(length) or b"{}").get("executionArn", "")
        execution = self._find(arn)
        if execution is None or execution.exec_status.value not in (
            "FAILED",
            "TIMED_OUT",
            "ABORTED",
        ):
            code = "ExecutionDoesNotExist" if execution is None else "ExecutionNotRedrivable"
            body = json.dumps({"__type": code, "message": f"cannot redrive {arn}"}).encode()
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.0"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        execution.exec_worker = None
        execution.error = None
        execution.cause = None
        execution.stop_date = None
        execution.output = None
        execution.start()
        body = json.dumps({"redriveDate": time.time()}).encode()
        start_response("200 OK", _json_headers(body))
        return [body]

    def _find(self, arn: str) -> Any:
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        backend = stepfunctions_parser_backends[MOTO_ACCOUNT_ID][self._region]
        for machine in backend.state_machines:
            for execution in machine.executions:
                if execution.execution_arn == arn:
                    return execution
        return None
