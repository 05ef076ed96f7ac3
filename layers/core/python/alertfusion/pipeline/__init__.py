"""The asynchronous pipeline's steps, as the Lambda handlers call them.

* :func:`handle_upload` (starter, one S3 record): validate, record the job, queue the audio
  stage, start Transcribe.
* :func:`run_audio_stage` (classifier, ``audio_stage`` task): the preliminary audio-only
  verdict; with ``TRANSCRIBE_POLICY=gated`` it then starts Transcribe only for a
  non-regular verdict (else the job is DONE with the audio-only verdict); with a transcript
  supplied by the client it writes the fused final verdict directly; with
  ``TRANSCRIPT_SOURCE=model`` (the bundle's own speech-to-text model) the engine transcribes
  and fuses in that one invocation and its verdict is final (no Transcribe).
* :func:`finalize_job` (classifier, Transcribe event or ``finalize`` task): the final
  verdict from transcript + audio, audio-only when Transcribe failed or heard nothing.
* :func:`reclassify_job` (classifier, ``reclassify`` task from a backfill): another bundle
  version's verdict for a DONE job, kept beside its others; no state change, no Transcribe.
* :func:`sweep` (sweeper, on a schedule): re-drives jobs whose events were lost and ends
  jobs past the hard limit FAILED/TIMEOUT.

Every step is idempotent and safe to run twice, concurrently or out of order: the job
record only moves forward (conditional writes), each verdict is written once, Transcribe
is started under a name derived from the job id, and alerts are sent-then-marked
(alertfusion.notify). Permanent input problems end the job FAILED with a reason code;
anything transient raises, for the caller's retry (Lambda, SQS, EventBridge).

One module per concern: `context` (settings, job store, AWS clients), `outcomes` (what the
steps return), `storage` (S3 reads and writes, work-queue sends, botocore errors mapped),
`transcription` (starting Transcribe, for the starter and the audio stage), `starter`,
`stages` (the classifier's two steps) and `sweeper`. The engine comes in as an
alertfusion.protocols.Classifier.
"""

from alertfusion.pipeline.context import PipelineContext, get_context, reset_context
from alertfusion.pipeline.outcomes import (
    StageAction,
    StageOutcome,
    SweepReport,
    TranscribeAction,
    UploadAction,
    UploadOutcome,
)
from alertfusion.pipeline.stages import finalize_job, reclassify_job, run_audio_stage
from alertfusion.pipeline.starter import handle_upload
from alertfusion.pipeline.sweeper import sweep

__all__ = [
    "PipelineContext",
    "StageAction",
    "StageOutcome",
    "SweepReport",
    "TranscribeAction",
    "UploadAction",
    "UploadOutcome",
    "finalize_job",
    "get_context",
    "handle_upload",
    "reclassify_job",
    "reset_context",
    "run_audio_stage",
    "sweep",
]
