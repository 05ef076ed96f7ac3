"""Backfills: classify every recording under an S3 prefix on Step Functions' Distributed Map.

* `plan`: the map's sizing (concurrency, batch, rate, tolerated failures) from Transcribe's
  quotas and ``TRANSCRIBE_POLICY``; `BackfillSettings`.
* `definition`: the state machine (Amazon States Language), one definition for the CDK
  construct and the local stack (resource ARNs as ``${...}`` substitutions).
* `batch`: what the backfill function does for one child workflow: admit its objects as
  jobs (the starter's rule and validation), check them until they are final, write the
  batch's results; then summarise the run.
* `summary`: the results, the counts, the agreement table between bundle versions, the cost.
* `service`: start (or dry-run) and describe a backfill, for the API and the command line.
"""
